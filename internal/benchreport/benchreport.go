// Package benchreport reports benchmark timings as medians: on a shared machine they resist noise
// better than the mean that ns/op is.
package benchreport

import (
	"slices"
	"testing"
	"time"
)

// Images reports the median of durations, each the time of one iteration over images images, as
// median-ms and images/s.
func Images(b *testing.B, durations []time.Duration, images int) {
	b.Helper()
	if len(durations) == 0 {
		return
	}
	sorted := slices.Clone(durations)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	b.ReportMetric(float64(images)/median.Seconds(), "images/s")
	b.ReportMetric(median.Seconds()*1000, "median-ms")
}
