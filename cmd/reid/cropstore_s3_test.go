package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/cropstore/s3test"
	"github.com/reid-project/reid/internal/testassets"
)

// TestRunWithS3CropStore runs the pipeline with cropstore.backend s3, set only through the
// environment, against gofakes3 (an in-process S3 server) spoken to by the real client, and also
// against a real S3-compatible server when REIDTEST_S3_ENDPOINT names one (package s3test): every
// crop lands in the bucket, and the commands that read crops back (a contact sheet, a search by
// image) work from it.
func TestRunWithS3CropStore(t *testing.T) {
	for _, bucket := range s3test.Buckets(t, "site-crops") {
		t.Run(bucket.Kind, func(t *testing.T) { testRunWithS3CropStore(t, bucket) })
	}
}

func testRunWithS3CropStore(t *testing.T, bucket s3test.Bucket) {
	dataDir := pipelineFixture(t)
	t.Setenv("REID_CROPSTORE_BACKEND", "s3")
	t.Setenv("REID_CROPSTORE_S3_ENDPOINT", bucket.Endpoint)
	t.Setenv("REID_CROPSTORE_S3_BUCKET", bucket.Name)
	t.Setenv("REID_CROPSTORE_S3_REGION", bucket.Region)
	t.Setenv("REID_CROPSTORE_S3_ACCESS_KEY", bucket.AccessKey)
	t.Setenv("REID_CROPSTORE_S3_SECRET_KEY", bucket.SecretKey)

	out, err := runReid(t, "--data-dir", dataDir, "run", "--source", testassets.Path(t, "video/vtest.avi"),
		"--camera", "gate", "--max-frames", "30", "--exit-when-done", "--serve=false", "--json")
	if err != nil {
		t.Fatalf("reid run: %v\n%s", err, out)
	}
	var summary runSummary
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &summary); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	if summary.Crops < 10 || summary.Archived != summary.Crops {
		t.Fatalf("crops %d, archived %d", summary.Crops, summary.Archived)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "crops")); !os.IsNotExist(err) {
		t.Errorf("a local crop store was made beside the bucket: %v", err)
	}

	options := loadOptions(t, dataDir)
	store, err := openCropStore(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := store.(*cropstore.S3); !ok || store.Location() != "s3://"+bucket.Name {
		t.Fatalf("opened %T at %s", store, store.Location())
	}
	var ids []string
	tracks := map[int64][]string{}
	if err := store.Walk(context.Background(), cropstore.Filter{Camera: "gate"}, func(record cropstore.CropRecord) error {
		ids = append(ids, record.ID)
		tracks[record.Track] = append(tracks[record.Track], record.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if int64(len(ids)) != summary.Crops {
		t.Fatalf("%d crops in the bucket, %d made", len(ids), summary.Crops)
	}

	sheet := filepath.Join(t.TempDir(), "sheet.png")
	if out, err := runReid(t, "--data-dir", dataDir, "crops", "sheet", "--camera", "gate", "--out", sheet); err != nil {
		t.Fatalf("reid crops sheet: %v\n%s", err, out)
	}
	query, err := store.Image(context.Background(), ids[len(ids)/2])
	if err != nil {
		t.Fatal(err)
	}
	queryPath := filepath.Join(t.TempDir(), "query.jpg")
	if err := os.WriteFile(queryPath, query, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runReid(t, "--data-dir", dataDir, "search", "--image", queryPath, "--k", "1", "--json")
	if err != nil || !strings.Contains(out, ids[len(ids)/2]) {
		t.Fatalf("reid search: %v\n%s", err, out)
	}
	checkErasureInBucket(t, dataDir, store, summary.Crops, tracks)
}

// checkErasureInBucket erases a track through another process's view of the bucket (a lookup
// server's), then runs the same video again: the same crops come again with the same ids, and
// the run keeps every one of them but the erased track's.
func checkErasureInBucket(t *testing.T, dataDir string, store cropStore, crops int64, tracks map[int64][]string) {
	t.Helper()
	ctx := context.Background()
	track := longestTrack(tracks)
	elsewhere, err := openCropStore(ctx, loadOptions(t, dataDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := elsewhere.RecordErasure(ctx, cropstore.Erasure{Tracks: []cropstore.ErasedTrack{{Camera: "gate", Track: track}}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range tracks[track] {
		if err := elsewhere.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runReid(t, "--data-dir", dataDir, "run", "--source", testassets.Path(t, "video/vtest.avi"),
		"--camera", "gate", "--max-frames", "30", "--exit-when-done", "--serve=false", "--json")
	if err != nil {
		t.Fatalf("reid run again: %v\n%s", err, out)
	}
	var summary runSummary
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &summary); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	erased := int64(len(tracks[track]))
	if summary.Crops != crops-erased || summary.Archived != summary.Crops {
		t.Errorf("the second run stored %d crops (archived %d); want the first run's %d but track %d's %d", summary.Crops, summary.Archived, crops, track, erased)
	}
	for _, id := range tracks[track] {
		if _, err := store.Metadata(ctx, id); !errors.Is(err, cropstore.ErrNotFound) {
			t.Errorf("erased crop %s is in the bucket again: %v", id, err)
		}
	}
}
