// Package s3test gives tests S3 buckets to run against: always an in-process fake (gofakes3,
// spoken to over HTTP by the real client), and, when REIDTEST_S3_ENDPOINT names one, a fresh
// bucket on a real S3-compatible server (MinIO, Ceph, AWS), removed again when the test ends.
//
// The fake is what `make test` runs everywhere; a real server cannot be assumed on a build
// machine, so it is an addition to the fake, never a replacement:
//
//	REIDTEST_S3_ENDPOINT=http://127.0.0.1:9000 REIDTEST_S3_ACCESS_KEY=... \
//	REIDTEST_S3_SECRET_KEY=... go test ./cropstore/... ./cmd/reid -run S3
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Bucket is where a test's crops go.
type Bucket struct {
	Kind      string // "fake" or "server", for subtest names
	Endpoint  string // a URL: http://host:port or https://host:port
	Name      string
	Region    string
	AccessKey string
	SecretKey string
}

// Buckets returns the fake's bucket and, when REIDTEST_S3_ENDPOINT is set, a real server's, each
// empty and named name on the fake, name-<random> on the server (a server is shared).
func Buckets(t testing.TB, name string) []Bucket {
	buckets := []Bucket{Fake(t, name)}
	if server, ok := Server(t, name); ok {
		buckets = append(buckets, server)
	}
	return buckets
}

// Fake starts gofakes3 for the test's lifetime with one empty bucket.
func Fake(t testing.TB, name string) Bucket {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
	server := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(server.Close)
	return Bucket{Kind: "fake", Endpoint: server.URL, Name: name, Region: "us-east-1", AccessKey: "reid", SecretKey: "not-a-secret"}
}

// Server makes a fresh bucket on the server REIDTEST_S3_ENDPOINT names, with
// REIDTEST_S3_ACCESS_KEY and REIDTEST_S3_SECRET_KEY, and empties and removes it when the test
// ends. It reports false when the variable is unset; a server that is named but cannot be used
// fails the test.
func Server(t testing.TB, name string) (Bucket, bool) {
	t.Helper()
	endpoint := os.Getenv("REIDTEST_S3_ENDPOINT")
	if endpoint == "" {
		return Bucket{}, false
	}
	parsed, err := url.Parse(endpoint)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		t.Fatalf("REIDTEST_S3_ENDPOINT %q: want http://host:port or https://host:port", endpoint)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	bucket := Bucket{
		Kind:      "server",
		Endpoint:  endpoint,
		Name:      name + "-" + hex.EncodeToString(suffix),
		Region:    envOr("REIDTEST_S3_REGION", "us-east-1"),
		AccessKey: os.Getenv("REIDTEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("REIDTEST_S3_SECRET_KEY"),
	}
	client, err := minio.New(parsed.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(bucket.AccessKey, bucket.SecretKey, ""),
		Secure: parsed.Scheme == "https",
		Region: bucket.Region,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, bucket.Name, minio.MakeBucketOptions{Region: bucket.Region}); err != nil {
		t.Fatalf("making bucket %s on %s: %v", bucket.Name, endpoint, err)
	}
	t.Cleanup(func() { removeBucket(t, client, bucket.Name) })
	return bucket, true
}

func removeBucket(t testing.TB, client *minio.Client, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objects := client.ListObjects(ctx, name, minio.ListObjectsOptions{Recursive: true})
	for result := range client.RemoveObjects(ctx, name, objects, minio.RemoveObjectsOptions{}) {
		t.Errorf("emptying bucket %s: %s: %v", name, result.ObjectName, result.Err)
	}
	if err := client.RemoveBucket(ctx, name); err != nil {
		t.Errorf("removing bucket %s: %v", name, err)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
