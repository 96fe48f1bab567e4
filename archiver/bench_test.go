package archiver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/cropstore/s3test"
	"github.com/reid-project/reid/internal/atomicfile"
	"github.com/reid-project/reid/stream"
)

// BenchmarkArchive writes batches of 256 crop-sized records (6 KB, the mean JPEG of the demo's
// 128x256 crops) into the local crop store in a temporary directory, and into a real S3 server's
// bucket when REIDTEST_S3_ENDPOINT names one (package s3test; the in-process fake would only
// measure itself), alternating: one writer, the default writers, and the default writers into the
// layout the store had before, an image and a JSON file (object) per crop. crops/s medians and
// their ratios.
func BenchmarkArchive(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		store, err := cropstore.OpenLocal(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		benchmarkArchive(b, store, twoFileStore{root: b.TempDir()})
	})
	if bucket, ok := s3test.Server(b, "archive"); ok {
		b.Run("s3-server", func(b *testing.B) {
			store, err := cropstore.OpenS3(context.Background(), cropstore.S3Options{Endpoint: bucket.Endpoint, Bucket: bucket.Name, Region: bucket.Region, AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey})
			if err != nil {
				b.Fatal(err)
			}
			endpoint, _ := url.Parse(bucket.Endpoint)
			client, err := minio.New(endpoint.Host, &minio.Options{Creds: credentials.NewStaticV4(bucket.AccessKey, bucket.SecretKey, ""),
				Secure: endpoint.Scheme == "https", Region: bucket.Region})
			if err != nil {
				b.Fatal(err)
			}
			benchmarkArchive(b, store, twoObjectStore{client: client, bucket: bucket.Name})
		})
	}
}

// twoFileStore writes crops as the local store did before their metadata moved into the image:
// the JPEG, then its metadata as JSON, each to a temporary file, synced and renamed.
type twoFileStore struct{ root string }

func (s twoFileStore) Put(_ context.Context, record cropstore.CropRecord) error {
	base := filepath.Join(s.root, record.Camera, record.Time.Format("20060102"), record.ID)
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return err
	}
	metadata, err := json.Marshal(record)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(base+".jpg", record.JPEG); err != nil {
		return err
	}
	return atomicfile.Write(base+".json", metadata)
}

// twoObjectStore puts crops into a bucket as the S3 store did before: the JPEG object, then its
// metadata object.
type twoObjectStore struct {
	client *minio.Client
	bucket string
}

func (s twoObjectStore) Put(ctx context.Context, record cropstore.CropRecord) error {
	base := "before/" + record.Camera + "/" + record.Time.Format("20060102") + "/" + record.ID
	metadata, err := json.Marshal(record)
	if err != nil {
		return err
	}
	for _, object := range []struct {
		key  string
		data []byte
	}{{base + ".jpg", record.JPEG}, {base + ".json", metadata}} {
		if _, err := s.client.PutObject(ctx, s.bucket, object.key, bytes.NewReader(object.data), int64(len(object.data)), minio.PutObjectOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// benchmarkArchive measures store against before, the same crops written the way they were
// before.
func benchmarkArchive(b *testing.B, store, before Store) {
	jpeg := append(append([]byte{0xff, 0xd8}, make([]byte, 6<<10)...), 0xff, 0xd9)
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
	rate := func(store Store, writers int) float64 {
		archive := New(store)
		archive.writers = writers
		messages := batch()
		began := time.Now()
		if err := archive.Handle(context.Background(), messages); err != nil {
			b.Fatal(err)
		}
		return float64(len(messages)) / time.Since(began).Seconds()
	}
	median := func(rates []float64) float64 {
		slices.Sort(rates)
		return rates[len(rates)/2]
	}
	var one, many, twoFiles []float64
	for b.Loop() {
		one = append(one, rate(store, 1))
		many = append(many, rate(store, defaultWriters))
		twoFiles = append(twoFiles, rate(before, defaultWriters))
	}
	b.ReportMetric(median(one), "one-writer-crops/s")
	b.ReportMetric(median(many), "crops/s")
	b.ReportMetric(median(many)/median(one), "speedup")
	b.ReportMetric(median(twoFiles), "two-file-crops/s")
	b.ReportMetric(median(many)/median(twoFiles), "ratio-to-two-files")
}
