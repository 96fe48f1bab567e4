package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/internal/npy"
	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/model"
)

func runReid(t testing.TB, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--log-level", "warn"))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestClusterCommand(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	matrix := npy.Matrix{Rows: 120, Cols: 16, Data: make([]float32, 120*16)}
	for i := range matrix.Rows {
		for k := range matrix.Cols {
			// Three tight groups of 40 along different axes.
			centre := float32(0)
			if k == i%3 {
				centre = 5
			}
			matrix.Row(i)[k] = centre + float32(0.3*rng.NormFloat64())
		}
	}
	features, labelsPath := filepath.Join(dir, "F.npy"), filepath.Join(dir, "labels.txt")
	if err := npy.WriteFile(features, matrix); err != nil {
		t.Fatal(err)
	}
	out, err := runReid(t, "cluster", "--features", features, "--out", labelsPath, "--data-dir", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	data, err := os.ReadFile(labelsPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(data))
	if len(lines) != 120 {
		t.Fatalf("%d labels for 120 rows", len(lines))
	}
	for i := 3; i < 120; i++ {
		if lines[i] != lines[i%3] || lines[i] == "-1" {
			t.Fatalf("row %d labelled %s, row %d %s: the three groups are not recovered", i, lines[i], i%3, lines[i%3])
		}
	}
	if !strings.Contains(out, "clusters: 3\n") || !strings.Contains(out, "outliers: 0 (0.0%)") {
		t.Errorf("summary:\n%s", out)
	}
	if _, err := runReid(t, "cluster", "--features", features, "--out", labelsPath, "--eps", "1.5"); err == nil {
		t.Error("eps 1.5 accepted")
	}
}

func TestEvalCommandWithFeatureFiles(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	write := func(name string, rows int, prefix func(i int) string) ([][]float32, []eval.Label) {
		matrix := npy.Matrix{Rows: rows, Cols: 8, Data: make([]float32, rows*8)}
		var names strings.Builder
		var labels []eval.Label
		for i := range rows {
			label := eval.Label{PID: 1 + i%10, Camera: 1 + rng.IntN(3)}
			labels = append(labels, label)
			fmt.Fprintf(&names, "%s%04d_c%ds1_%06d_00.jpg\n", prefix(i), label.PID, label.Camera, i)
			for k := range 8 {
				matrix.Row(i)[k] = float32(rng.NormFloat64())
			}
			matrix.Row(i)[label.PID%8] += 1.5
		}
		if err := npy.WriteFile(filepath.Join(dir, name+".npy"), matrix); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(names.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return matrix.RowSlices(), labels
	}
	queryFeatures, query := write("Q", 30, func(int) string { return "" })
	galleryFeatures, gallery := write("G", 200, func(i int) string { return "/images/" })
	want, _, err := eval.EvaluateFeatures(context.Background(), queryFeatures, galleryFeatures, query, gallery, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := runReid(t, "eval", "--features-query", filepath.Join(dir, "Q.npy"), "--features-gallery", filepath.Join(dir, "G.npy"), "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got map[string]float64
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if len(got) != 5 || got["mAP"] != want.MAP || got["rank1"] != want.Rank1 || got["rank5"] != want.Rank5 ||
		got["rank10"] != want.Rank10 || got["mINP"] != want.MINP || want.MAP <= 0.1 {
		t.Errorf("printed %v, package computes %+v", got, want)
	}
	if _, err := runReid(t, "eval", "--features-query", filepath.Join(dir, "Q.npy")); err == nil {
		t.Error("missing gallery features accepted")
	}
	if _, err := runReid(t, "eval", "--dataset", dir); err == nil {
		t.Error("--dataset without --model accepted")
	}
}

// TestEvalCommandWithModel runs the registered shared OSNet through the CLI. Every gallery
// picture of a query's identity is an exact copy of the query taken "by another camera", so
// whatever the model, each copy is at distance 0 and the ranking must be perfect; a mix-up of
// paths, rows or labels breaks that.
func TestEvalCommandWithModel(t *testing.T) {
	weights := testassets.Path(t, "models/reid/osnet_x0_25_msmt17.pth")
	dataDir := t.TempDir()
	registry, err := model.Open(filepath.Join(dataDir, "models"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Register(context.Background(), model.Metadata{Name: "osnet", Arch: "osnet_x0_25", Dim: 512,
		InputHeight: 256, InputWidth: 128, WeightsFormat: "pytorch"}, weights); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	noise := func() image.Image {
		picture := image.NewRGBA(image.Rect(0, 0, 48, 96))
		for i := range picture.Pix {
			picture.Pix[i] = uint8(rng.IntN(256))
		}
		return picture
	}
	save := func(dir, name string, picture image.Image) {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		file, err := os.Create(filepath.Join(root, dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		if err := jpeg.Encode(file, picture, &jpeg.Options{Quality: 95}); err != nil {
			t.Fatal(err)
		}
	}
	for pid := 1; pid <= 4; pid++ {
		picture := noise()
		save(eval.QueryDir, fmt.Sprintf("%04d_c1s1_000001_00.jpg", pid), picture)
		save(eval.GalleryDir, fmt.Sprintf("%04d_c2s1_000001_00.jpg", pid), picture)
		save(eval.GalleryDir, fmt.Sprintf("%04d_c1s1_000002_00.jpg", pid), noise()) // same camera: ignored
	}
	for i := range 4 {
		save(eval.GalleryDir, fmt.Sprintf("0000_c3s1_%06d_00.jpg", i), noise())
	}
	pictures := t.TempDir()
	out, err := runReid(t, "eval", "--dataset", root, "--model", "v1", "--json", "--data-dir", dataDir,
		"--visualize", "2", "--out", pictures)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got map[string]float64
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if got["mAP"] != 1 || got["rank1"] != 1 || got["mINP"] != 1 {
		t.Errorf("metrics %v, want a perfect ranking", got)
	}
	written, _ := filepath.Glob(filepath.Join(pictures, "*.png"))
	if len(written) != 2 {
		t.Errorf("pictures: %v", written)
	}
}
