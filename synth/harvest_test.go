package synth

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/detector"
	"github.com/reid-project/reid/internal/testassets"
)

// newPipelineDetector loads the shared Yolo-Fastest person detector with the pipeline's default
// settings (config.Default).
func newPipelineDetector(t testing.TB) *detector.Detector {
	t.Helper()
	modelsDir := filepath.Dir(testassets.Path(t, "models/detector/yolo-fastest-1.1_body.cfg"))
	d, err := detector.New(config.Default().Detector, modelsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// The harvest of the shared videos takes about 15 s; the package's tests share one.
var (
	harvestOnce    sync.Once
	harvested      *Library
	harvestFailure error
)

func harvestShared(t *testing.T) *Library {
	t.Helper()
	videos := []string{
		testassets.Path(t, "video/vtest.avi"),
		testassets.Path(t, "video/one-by-one-person-detection.mp4"),
	}
	harvestOnce.Do(func() {
		d, err := HarvestDetector(filepath.Dir(testassets.Path(t, "models/detector/yolo-fastest-1.1_body.cfg")))
		if err != nil {
			harvestFailure = err
			return
		}
		defer d.Close()
		harvested, harvestFailure = Harvest(context.Background(), HarvestOptions{Videos: videos, Detector: FromDetector(d)})
	})
	if harvestFailure != nil {
		t.Fatal(harvestFailure)
	}
	return harvested
}

func TestHarvestFindsRealBodies(t *testing.T) {
	library := harvestShared(t)
	perSource := map[string]int{}
	for _, body := range library.Bodies {
		perSource[body.Source]++
		if body.Image.Height < minBodyHeight || body.Image.Height < body.Image.Width {
			t.Errorf("body from %s frame %d is %dx%d: not an upright whole person", body.Source, body.Frame, body.Image.Width, body.Image.Height)
		}
	}
	t.Logf("bodies per source: %v, plates: %d", perSource, len(library.Plates))
	if perSource["vtest.avi"] < 150 || perSource["one-by-one-person-detection.mp4"] < 10 {
		t.Errorf("bodies per source %v: want at least 150 from vtest.avi and 10 from the indoor video", perSource)
	}
	if len(library.Plates) != 2 {
		t.Errorf("%d plates, want one per video", len(library.Plates))
	}
	if dir := os.Getenv("SYNTH_DEBUG_DIR"); dir != "" {
		var tiles []raster
		for _, body := range library.Bodies {
			tiles = append(tiles, onGrey(body))
		}
		sheet, err := contactSheet(tiles, 30, 40, 90)
		if err != nil {
			t.Fatal(err)
		}
		if err := writePNG(filepath.Join(dir, "bodies.png"), sheet); err != nil {
			t.Fatal(err)
		}
		for _, plate := range library.Plates {
			if err := writePNG(filepath.Join(dir, plate.Name+".png"), plate.Image); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// onGrey composites a body over a flat grey ground, to look at cut-outs.
func onGrey(body Body) raster {
	out := body.Image.clone()
	for i, alpha := range body.Alpha.Values {
		for c := 0; c < 3; c++ {
			out.Pix[i*3+c] = clampByte(alpha*float32(out.Pix[i*3+c]) + (1-alpha)*128)
		}
	}
	return out
}
