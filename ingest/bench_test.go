package ingest

import (
	"context"
	"testing"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/detector"
	"github.com/reid-project/reid/internal/testassets"
)

// BenchmarkIngestVtest runs the whole camera pipeline (decode, detect with Yolo-Fastest body,
// track, crop, JPEG) over vtest.avi with one OpenCV thread into an in-memory sink. The disk-backed
// comparison with Python is scripts/bench-ingest.sh.
func BenchmarkIngestVtest(b *testing.B) {
	video := testassets.Path(b, "video/vtest.avi")
	models := testassets.Path(b, "models/detector")
	defaults := config.Default()
	before := detector.Threads()
	detector.SetThreads(1)
	defer detector.SetThreads(before)
	frames := int64(0)
	for range b.N {
		options := testOptions(&memorySink{}, func(settings config.Detector) (Detector, error) { return detector.New(settings, models) })
		options.Ingest = defaults.Ingest
		ingester, err := New(options)
		if err != nil {
			b.Fatal(err)
		}
		if err := ingester.Run(context.Background(), []config.Camera{{ID: "bench", Source: video}}); err != nil {
			b.Fatal(err)
		}
		frames += ingester.Stats().Frames
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
}
