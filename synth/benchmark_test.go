package synth

import (
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/internal/npy"
	"github.com/reid-project/reid/internal/testassets"
)

// osnet is the shared OSNet x0.25 MSMT17 re-id model through OpenCV DNN (batch 1 only in
// OpenCV 4.6): the independent judge of whether the synthetic data is a useful benchmark.
type osnet struct{ net gocv.Net }

func newOSNet(t testing.TB) *osnet {
	t.Helper()
	net := gocv.ReadNetFromONNX(testassets.Path(t, "models/reid/osnet_x0_25_msmt17.onnx"))
	if net.Empty() {
		t.Fatal("cannot load the OSNet ONNX model")
	}
	t.Cleanup(func() { net.Close() })
	return &osnet{net: net}
}

// embed returns the 512-d feature of one image file: 256x128 RGB, /255, ImageNet mean and std.
func (o *osnet) embed(path string) ([]float32, error) {
	img := gocv.IMRead(path, gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		return nil, fmt.Errorf("cannot read %s", path)
	}
	blob := gocv.BlobFromImage(img, 1.0/255, image.Pt(128, 256), gocv.NewScalar(0, 0, 0, 0), true, false)
	defer blob.Close()
	data, err := blob.DataPtrFloat32()
	if err != nil {
		return nil, err
	}
	mean := [3]float32{0.485, 0.456, 0.406}
	std := [3]float32{0.229, 0.224, 0.225}
	plane := 256 * 128
	for c := 0; c < 3; c++ {
		for i := c * plane; i < (c+1)*plane; i++ {
			data[i] = (data[i] - mean[c]) / std[c]
		}
	}
	o.net.SetInput(blob, "")
	out := o.net.Forward("")
	defer out.Close()
	feature, err := out.DataPtrFloat32()
	if err != nil {
		return nil, err
	}
	if len(feature) != 512 {
		return nil, fmt.Errorf("OSNet gave %d values, want 512", len(feature))
	}
	return append([]float32(nil), feature...), nil
}

// benchmarkFigures are the numbers the acceptance asks for.
type benchmarkFigures struct {
	Cross, SameCamera, Chance eval.Metrics
}

// measure embeds a data set's query and gallery with OSNet and scores it three ways: the Market
// protocol (cross-camera), the same-camera counterpart (true matches only from the query's own
// camera, the same gallery as negatives), and random features (chance).
func measure(t *testing.T, dir string) benchmarkFigures {
	t.Helper()
	ctx := context.Background()
	dataset, err := eval.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	model := newOSNet(t)
	embedAll := func(items []eval.Item) [][]float32 {
		features := make([][]float32, len(items))
		for i, item := range items {
			if features[i], err = model.embed(item.Path); err != nil {
				t.Fatal(err)
			}
		}
		return features
	}
	query, gallery := embedAll(dataset.Query), embedAll(dataset.Gallery)
	queryLabels, galleryLabels := eval.Labels(dataset.Query), eval.Labels(dataset.Gallery)
	distances, err := eval.Distances(ctx, query, gallery)
	if err != nil {
		t.Fatal(err)
	}
	var figures benchmarkFigures
	if figures.Cross, err = eval.Evaluate(ctx, distances, queryLabels, galleryLabels); err != nil {
		t.Fatal(err)
	}
	figures.SameCamera = sameCameraMetrics(t, distances, queryLabels, galleryLabels)
	random := rand.New(rand.NewPCG(7, 7))
	noise := npy.Matrix{Rows: distances.Rows, Cols: distances.Cols, Data: make([]float32, len(distances.Data))}
	for i := range noise.Data {
		noise.Data[i] = random.Float32()
	}
	if figures.Chance, err = eval.Evaluate(ctx, noise, queryLabels, galleryLabels); err != nil {
		t.Fatal(err)
	}
	return figures
}

// sameCameraMetrics scores each query against the whole gallery with only its own camera's
// images of the same identity as true matches; the other cameras' ones are ignored (junk).
func sameCameraMetrics(t *testing.T, distances npy.Matrix, query, gallery []eval.Label) eval.Metrics {
	t.Helper()
	var results []eval.QueryResult
	relabelled := make([]eval.Label, len(gallery))
	for q, label := range query {
		for g, item := range gallery {
			relabelled[g] = item
			if item.PID == label.PID && item.Camera != label.Camera {
				relabelled[g].PID = -1
			}
		}
		// Camera 0 exists in no gallery, so the protocol's same-camera rule removes nothing.
		row := npy.Matrix{Rows: 1, Cols: distances.Cols, Data: distances.Data[q*distances.Cols : (q+1)*distances.Cols]}
		result, err := eval.EvaluateQueries(context.Background(), row, []eval.Label{{PID: label.PID, Camera: 0}}, relabelled)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, result...)
	}
	return eval.Aggregate(results)
}

func TestDebugBenchmark(t *testing.T) {
	dir := os.Getenv("SYNTH_DEBUG_DIR")
	if dir == "" {
		t.Skip("debug only")
	}
	library := harvestShared(t)
	for _, field := range strings.Fields(os.Getenv("SYNTH_D")) {
		difficulty, _ := strconv.ParseFloat(field, 64)
		identities, _ := strconv.Atoi(os.Getenv("SYNTH_IDS"))
		out := t.TempDir()
		_, err := WriteDataset(context.Background(), out, library, DatasetOptions{Identities: identities, PerCamera: 3, Seed: 1, Difficulty: difficulty})
		if err != nil {
			t.Fatal(err)
		}
		f := measure(t, out)
		t.Logf("difficulty %.1f: cross mAP %.3f r1 %.3f | same-camera mAP %.3f r1 %.3f | chance mAP %.3f (queries %d)",
			difficulty, f.Cross.MAP, f.Cross.Rank1, f.SameCamera.MAP, f.SameCamera.Rank1, f.Chance.MAP, f.Cross.Queries)
	}
}
