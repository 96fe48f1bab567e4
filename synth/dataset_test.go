package synth

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/eval"
)

func TestDatasetLayoutAndReproducibility(t *testing.T) {
	library := harvestShared(t)
	options := DatasetOptions{Identities: 8, Cameras: 3, PerCamera: 2, Seed: 5, Distractors: 3}
	first, second, other := t.TempDir(), t.TempDir(), t.TempDir()
	summary, err := WriteDataset(context.Background(), first, library, options)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDataset(context.Background(), second, library, options); err != nil {
		t.Fatal(err)
	}
	options.Seed = 6
	if _, err := WriteDataset(context.Background(), other, library, options); err != nil {
		t.Fatal(err)
	}
	dataset, err := eval.Load(first)
	if err != nil {
		t.Fatal(err)
	}
	if summary.TrainIdentities != 4 || summary.TestIdentities != 4 {
		t.Errorf("train/test identities %d/%d, want 4/4", summary.TrainIdentities, summary.TestIdentities)
	}
	if len(dataset.Train) != summary.TrainImages || len(dataset.Query) != summary.QueryImages || len(dataset.Gallery) != summary.GalleryImages {
		t.Errorf("eval.Load read %d/%d/%d images, summary says %d/%d/%d", len(dataset.Train), len(dataset.Query), len(dataset.Gallery),
			summary.TrainImages, summary.QueryImages, summary.GalleryImages)
	}
	trainIDs := map[int]bool{}
	for _, item := range dataset.Train {
		trainIDs[item.PID] = true
		if item.PID < 1 || item.PID > 4 {
			t.Errorf("train image %s: identity %d, want 1-4", filepath.Base(item.Path), item.PID)
		}
	}
	queriesPerCamera := map[[2]int]int{}
	camerasPerIdentity := map[int]map[int]bool{}
	for _, item := range dataset.Query {
		queriesPerCamera[[2]int{item.PID, item.Camera}]++
		if trainIDs[item.PID] {
			t.Errorf("query identity %d is also a training identity", item.PID)
		}
	}
	distractors := 0
	for _, item := range dataset.Gallery {
		if item.PID == 0 {
			distractors++
			continue
		}
		if queriesPerCamera[[2]int{item.PID, item.Camera}] != 1 {
			t.Errorf("gallery image %s: its identity has %d queries in its camera, want 1", filepath.Base(item.Path), queriesPerCamera[[2]int{item.PID, item.Camera}])
		}
		if camerasPerIdentity[item.PID] == nil {
			camerasPerIdentity[item.PID] = map[int]bool{}
		}
		camerasPerIdentity[item.PID][item.Camera] = true
	}
	if distractors != 3 {
		t.Errorf("%d distractor images, want 3", distractors)
	}
	for id, cameras := range camerasPerIdentity {
		if len(cameras) < 2 {
			t.Errorf("test identity %d is seen by %d camera(s), want at least 2", id, len(cameras))
		}
	}
	for _, item := range append(append([]eval.Item{}, dataset.Train...), dataset.Query...) {
		name := filepath.Base(item.Path)
		if len(name) != len("0002_c1s1_000451_01.jpg") || !strings.HasSuffix(name, "_01.jpg") {
			t.Errorf("name %s is not Market style", name)
		}
		img := gocv.IMRead(item.Path, gocv.IMReadColor)
		if img.Cols() != CropWidth || img.Rows() != CropHeight {
			t.Errorf("%s is %dx%d, want %dx%d", name, img.Cols(), img.Rows(), CropWidth, CropHeight)
		}
		img.Close()
		same, err := os.ReadFile(filepath.Join(second, filepath.Base(filepath.Dir(item.Path)), name))
		if err != nil {
			t.Fatalf("same seed, missing file: %v", err)
		}
		original, err := os.ReadFile(item.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(original, same) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
		if changed, err := os.ReadFile(filepath.Join(other, filepath.Base(filepath.Dir(item.Path)), name)); err == nil && bytes.Equal(original, changed) {
			t.Errorf("%s is identical under another seed", name)
		}
	}
	sheet := filepath.Join(t.TempDir(), "sheet.png")
	if err := WriteContactSheet(first, sheet, 4, 6); err != nil {
		t.Fatal(err)
	}
	img := gocv.IMRead(sheet, gocv.IMReadColor)
	defer img.Close()
	if img.Rows() < 4*CropHeight || img.Cols() < 6*CropWidth {
		t.Errorf("contact sheet is %dx%d, want room for 4 rows of 6 crops", img.Cols(), img.Rows())
	}
}

func TestDatasetOptionsRejected(t *testing.T) {
	library := harvestShared(t)
	for _, options := range []DatasetOptions{
		{Identities: 1},
		{Identities: 10, Cameras: 12},
		{Identities: 10, PerCamera: 1},
		{Identities: 10, Difficulty: 9},
	} {
		if _, err := WriteDataset(context.Background(), t.TempDir(), library, options); err == nil {
			t.Errorf("options %+v accepted", options)
		}
		if options.Validate() == nil {
			t.Errorf("Validate accepts %+v", options)
		}
	}
	for _, options := range []VideoOptions{
		{Seconds: -1},
		{Cameras: 200},
		{Width: 100, Height: 50},
		{FPS: 500},
	} {
		if _, err := WriteVideos(context.Background(), t.TempDir(), library, options); err == nil {
			t.Errorf("video options %+v accepted", options)
		}
		if options.Validate() == nil {
			t.Errorf("Validate accepts video options %+v", options)
		}
	}
	if (DatasetOptions{}).Validate() != nil || (VideoOptions{}).Validate() != nil {
		t.Error("the defaults do not validate")
	}
	if _, err := WriteDataset(context.Background(), t.TempDir(), &Library{}, DatasetOptions{}); err == nil {
		t.Error("an empty library was accepted")
	}
}

// TestPaintKeepsShading checks that dressing a body keeps its shading: the painted torso's
// luminance follows the real one (folds, arms, light), it is not a flat fill. Over every harvested
// body, since the shading range is bounded on purpose: a torso of strong contrast (a light shirt
// under a dark jacket) is painted in a narrower range, and correlates less. A body whose torso has
// no shading (dark clothes clipped to black) has nothing to keep and is left out.
func TestPaintKeepsShading(t *testing.T) {
	library := harvestShared(t)
	random := rand.New(rand.NewPCG(1, 2))
	var correlations []float64
	for _, body := range library.Bodies {
		identity := NewIdentity(1, random)
		identity.UpperPattern, identity.Bag = PatternSolid, BagNone
		painted, _ := paint(body, identity, ViewFront, [2]float32{cropShadingLow, cropShadingHigh}, random)
		hair := longHairMask(body)
		var source, dressed []float64
		for y := int(0.2 * float32(body.Image.Height)); y < int(0.45*float32(body.Image.Height)); y++ {
			for x := 0; x < body.Image.Width; x++ {
				j := y*body.Image.Width + x
				if body.Alpha.Values[j] < 0.9 || hair[j] {
					continue // hair is painted as hair, another colour
				}
				source = append(source, float64(luma(body.Image.Pix[j*3], body.Image.Pix[j*3+1], body.Image.Pix[j*3+2])))
				dressed = append(dressed, float64(luma(painted.Pix[j*3], painted.Pix[j*3+1], painted.Pix[j*3+2])))
			}
		}
		if pearson(source, source) == 0 {
			continue // no shading in the source
		}
		correlations = append(correlations, pearson(source, dressed))
	}
	slices.Sort(correlations)
	median, tenth := correlations[len(correlations)/2], correlations[len(correlations)/10]
	t.Logf("%d bodies: painted torso luminance correlates with the real one %.2f (median), %.2f (10th percentile), %.2f (worst)",
		len(correlations), median, tenth, correlations[0])
	if len(correlations) < 100 || median < 0.95 || tenth < 0.75 || correlations[0] < 0.4 {
		t.Errorf("painting flattens the shading: median correlation %.2f, 10th percentile %.2f, worst %.2f over %d bodies; want >= 0.95, 0.75 and 0.4",
			median, tenth, correlations[0], len(correlations))
	}
}

func pearson(a, b []float64) float64 {
	var meanA, meanB float64
	for i := range a {
		meanA += a[i]
		meanB += b[i]
	}
	meanA /= float64(len(a))
	meanB /= float64(len(b))
	var cov, varA, varB float64
	for i := range a {
		cov += (a[i] - meanA) * (b[i] - meanB)
		varA += (a[i] - meanA) * (a[i] - meanA)
		varB += (b[i] - meanB) * (b[i] - meanB)
	}
	if varA == 0 || varB == 0 {
		return 0
	}
	return cov / math.Sqrt(varA*varB)
}
