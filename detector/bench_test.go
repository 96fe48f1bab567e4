package detector

import (
	"testing"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/internal/testassets"
)

// BenchmarkDetect measures letterbox + forward + decode + NMS on vtest.avi frame 300 for each
// model with one OpenCV thread; frames/s is reported as a metric.
func BenchmarkDetect(b *testing.B) {
	capture := readFrameB(b)
	defer capture.Close()
	before := Threads()
	SetThreads(1)
	defer SetThreads(before)
	for _, model := range []string{ModelYoloFastest, ModelYOLOXNano} {
		b.Run(model, func(b *testing.B) {
			options := config.Default().Detector
			options.Model = model
			detector, err := New(options, testassets.Path(b, "models/detector"))
			if err != nil {
				b.Fatal(err)
			}
			defer detector.Close()
			b.ResetTimer()
			for range b.N {
				if _, err := detector.Detect(capture); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
