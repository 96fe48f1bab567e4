package eval

import (
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/reid-project/reid/internal/npy"
)

func TestParseName(t *testing.T) {
	cases := []struct {
		name string
		want Label
		bad  bool
	}{
		{name: "0002_c1s1_000451_03.jpg", want: Label{2, 1}},
		{name: "-1_c3s2_001234_01.jpg", want: Label{-1, 3}},
		{name: "0000_c6s4_002202_07.jpg", want: Label{0, 6}},
		{name: "/some/dir/1501_c12s1_000001_00.png", want: Label{1501, 12}},
		{name: "Thumbs.db", bad: true},
		{name: "0002_s1_000451.jpg", bad: true},
		{name: "0002_c0s1_000451.jpg", bad: true},
		{name: "-2_c1s1_000451.jpg", bad: true},
	}
	for _, c := range cases {
		got, err := ParseName(c.name)
		if c.bad {
			if !errors.Is(err, ErrName) {
				t.Errorf("%s: %v, %v; want ErrName", c.name, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// writeImage writes a small solid-colour JPEG.
func writeImage(t *testing.T, path string, shade uint8) {
	t.Helper()
	picture := image.NewRGBA(image.Rect(0, 0, 32, 64))
	for i := range picture.Pix {
		picture.Pix[i] = shade
	}
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if err := jpeg.Encode(file, picture, nil); err != nil {
		t.Fatal(err)
	}
}

// makeDataset writes a tiny Market-layout set and returns its root.
func makeDataset(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string][]string{
		QueryDir:   {"0001_c1s1_000001_00.jpg", "0002_c2s1_000001_00.jpg", "-1_c1s1_000002_00.jpg", "0000_c1s1_000003_00.jpg"},
		GalleryDir: {"0001_c2s1_000010_00.jpg", "0001_c1s1_000011_00.jpg", "0002_c1s1_000012_00.jpg", "0003_c3s1_000013_00.jpg", "0000_c2s1_000014_00.jpg", "-1_c2s1_000015_00.jpg"},
		TrainDir:   {"0005_c1s1_000020_00.jpg", "0000_c2s1_000021_00.jpg"},
	}
	for dir, names := range files {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for i, name := range names {
			writeImage(t, filepath.Join(root, dir, name), uint8(40*i))
		}
	}
	if err := os.WriteFile(filepath.Join(root, GalleryDir, "Thumbs.db"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestLoad(t *testing.T) {
	root := makeDataset(t)
	dataset, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := Labels(dataset.Query); !slices.Equal(got, []Label{{1, 1}, {2, 2}}) {
		t.Errorf("query labels %v", got)
	}
	if got := Labels(dataset.Gallery); !slices.Equal(got, []Label{{0, 2}, {1, 1}, {1, 2}, {2, 1}, {3, 3}}) {
		t.Errorf("gallery labels %v (sorted by name, distractor kept, junk dropped)", got)
	}
	if len(dataset.Train) != 2 || dataset.JunkDropped != [3]int{0, 1, 1} || dataset.QueryDistractorsDropped != 1 {
		t.Errorf("train %d, junk %v, query distractors %d", len(dataset.Train), dataset.JunkDropped, dataset.QueryDistractorsDropped)
	}

	badName := makeDataset(t)
	writeImage(t, filepath.Join(badName, QueryDir, "person7.jpg"), 0)
	if _, err := Load(badName); !errors.Is(err, ErrName) || !strings.Contains(err.Error(), "person7.jpg") {
		t.Errorf("bad file name: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("empty directory accepted")
	}
}

// fakeExtractor gives each identity a fixed direction, so the ranking is perfect.
type fakeExtractor struct{ calls int }

func (f *fakeExtractor) Extract(_ context.Context, paths []string) ([][]float32, error) {
	f.calls++
	out := make([][]float32, len(paths))
	for i, path := range paths {
		label, err := ParseName(path)
		if err != nil {
			return nil, err
		}
		out[i] = make([]float32, 8)
		out[i][label.PID%8] = 1
		out[i][(label.PID+3)%8] = 0.1 * float32(i%3)
	}
	return out, nil
}

func TestEvaluateDatasetAndVisualize(t *testing.T) {
	ctx := context.Background()
	dataset, err := Load(makeDataset(t))
	if err != nil {
		t.Fatal(err)
	}
	extractor := &fakeExtractor{}
	metrics, distances, err := EvaluateDataset(ctx, dataset, extractor, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Both queries find their one cross-camera match first.
	if metrics.MAP != 1 || metrics.Rank1 != 1 || metrics.Queries != 2 || extractor.calls != 2 {
		t.Errorf("metrics %+v after %d extractor calls", metrics, extractor.calls)
	}
	out := t.TempDir()
	written, err := Visualize(ctx, out, distances, dataset.Query, dataset.Gallery, 5, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 {
		t.Fatalf("wrote %v, want one picture per query with a match", written)
	}
	file, err := os.Open(written[0])
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	picture, err := png.Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	// Query 0001 (camera 1): the same-camera 0001 is ignored, so 4 ranked tiles follow; the first
	// (its camera-2 match) is framed green, the rest red.
	tile := tileWidth + 2*frame
	if want := 5*tile + 4*gap + gap; picture.Bounds().Dx() != want {
		t.Errorf("picture width %d, want %d", picture.Bounds().Dx(), want)
	}
	frameAt := func(x int) color.RGBA { return color.RGBAModel.Convert(picture.At(x+1, 1)).(color.RGBA) }
	first := tile + 2*gap
	if frameAt(0) != queryFrame || frameAt(first) != correctFrame || frameAt(first+tile+gap) != wrongFrame {
		t.Errorf("frames %v %v %v", frameAt(0), frameAt(first), frameAt(first+tile+gap))
	}
}

func TestFeatureFileItems(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "F.npy")
	if err := npy.WriteFile(path, npy.Matrix{Rows: 3, Cols: 2, Data: []float32{1, 0, 0, 1, 1, 1}}); err != nil {
		t.Fatal(err)
	}
	withoutNames, err := ReadFeatureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := withoutNames.Items(nil); err == nil {
		t.Error("unlabelled rows accepted without a data set")
	}
	if _, _, err := withoutNames.Items(make([]Item, 2)); err == nil {
		t.Error("3 rows matched to 2 images")
	}
	names := "0001_c1s1_000001_00.jpg\n-1_c2s1_000001_00.jpg\n/elsewhere/0004_c2s1_000002_00.jpg\n"
	if err := os.WriteFile(filepath.Join(dir, "F.txt"), []byte(names), 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := ReadFeatureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	split := []Item{{Path: "/data/query/0004_c2s1_000002_00.jpg", Label: Label{4, 2}}}
	features, items, err := file.Items(split)
	if err != nil {
		t.Fatal(err)
	}
	if len(features) != 2 || items[0].Label != (Label{1, 1}) || items[1].Path != split[0].Path || features[1][0] != 1 {
		t.Errorf("items %+v features %v", items, features)
	}
	if err := os.WriteFile(filepath.Join(dir, "F.txt"), []byte("0001_c1s1_000001_00.jpg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFeatureFile(path); err == nil {
		t.Error("names file shorter than the matrix accepted")
	}
}
