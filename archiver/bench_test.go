package archiver

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/cropstore/s3test"
	"github.com/reid-project/reid/stream"
)

// BenchmarkArchive writes batches of 256 crop-sized records (12 KB, the size of a 128x256 JPEG)
// into the local crop store in a temporary directory, and into a real S3 server's bucket when
// REIDTEST_S3_ENDPOINT names one (package s3test; the in-process fake would only measure
// itself), one writer at a time and with the default writers alternately; crops/s medians and
// their ratio.
func BenchmarkArchive(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		store, err := cropstore.OpenLocal(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		benchmarkArchive(b, store)
	})
	if bucket, ok := s3test.Server(b, "archive"); ok {
		b.Run("s3-server", func(b *testing.B) {
			store, err := cropstore.OpenS3(context.Background(), cropstore.S3Options{Endpoint: bucket.Endpoint, Bucket: bucket.Name, Region: bucket.Region, AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey})
			if err != nil {
				b.Fatal(err)
			}
			benchmarkArchive(b, store)
		})
	}
}

func benchmarkArchive(b *testing.B, store Store) {
	jpeg := make([]byte, 12<<10)
	start := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	frame := int64(0)
	batch := func() []stream.Message {
		messages := make([]stream.Message, 256)
		for i := range messages {
			frame++
			at := start.Add(time.Duration(frame) * time.Millisecond)
			messages[i] = stream.Message{Record: cropstore.CropRecord{ID: cropstore.NewID("bench", at, frame, 0), Camera: "bench", Time: at, Frame: frame, JPEG: jpeg}}
		}
		return messages
	}
	rate := func(writers int) float64 {
		archive := New(store)
		archive.writers = writers
		messages := batch()
		began := time.Now()
		if err := archive.Handle(context.Background(), messages); err != nil {
			b.Fatal(err)
		}
		return float64(len(messages)) / time.Since(began).Seconds()
	}
	var one, many []float64
	for b.Loop() {
		one = append(one, rate(1))
		many = append(many, rate(defaultWriters))
	}
	slices.Sort(one)
	slices.Sort(many)
	b.ReportMetric(one[len(one)/2], "one-writer-crops/s")
	b.ReportMetric(many[len(many)/2], "crops/s")
	b.ReportMetric(many[len(many)/2]/one[len(one)/2], "speedup")
}
