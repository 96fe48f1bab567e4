package main

import (
	"context"
	"testing"
	"time"

	"github.com/reid-project/reid/internal/testassets"
)

// TestModelSwitchWaitsForArchiver promotes versions under a running follower while the archiver
// has stored none of the crops in the topic. The crops the old model embedded reach the new
// gallery only through the crop store, so a backfill that read the store before the archiver had
// stored them would leave them out of it for good: the switch must wait for the archiver, and
// then backfill every crop. A second promote while the first switch waits replaces it; a promote
// back to the version lookups read still backfills its gallery with what went elsewhere meanwhile.
func TestModelSwitchWaitsForArchiver(t *testing.T) {
	for _, tc := range []struct {
		name       string
		promotions []string
	}{
		{"promote", []string{"v2"}},
		{"promote another during the switch", []string{"v2", "v3"}},
		{"promote back during the switch", []string{"v2", "v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkModelSwitchWaits(t, tc.promotions) })
	}
}

func checkModelSwitchWaits(t *testing.T, promotions []string) {
	dataDir := pipelineFixture(t)
	weights := testassets.Path(t, "models/reid/osnet_x0_25_msmt17.pth")
	for range 2 {
		if out, err := runReid(t, "--data-dir", dataDir, "model", "import", "--arch", "osnet_x0_25", "--weights", weights); err != nil {
			t.Fatalf("model import: %v\n%s", err, out)
		}
	}
	options := loadOptions(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, closeBroker, err := openStream(ctx, options, true)
	if err != nil {
		t.Fatal(err)
	}
	defer closeBroker()
	ids := produceCrops(t, options, conn, 20)
	vectors, err := openIndex(ctx, options)
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	store, err := openCropStore(ctx, options)
	if err != nil {
		t.Fatal(err)
	}
	first, err := openModel(ctx, options, "v1")
	if err != nil {
		t.Fatal(err)
	}
	stage, err := newEmbedStage(ctx, options, conn, first, vectors)
	if err != nil {
		t.Fatal(err)
	}
	models, err := newModelFollower(ctx, options, vectors, stage.embedder, first, true)
	if err != nil {
		t.Fatal(err)
	}
	defer models.close()
	archive, _, err := newArchiveStage(options, conn, store)
	if err != nil {
		t.Fatal(err)
	}
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		models.run(followCtx, store, archive, nil)
	}()
	defer func() { stopFollowing(); <-followed }()

	for _, version := range promotions {
		if out, err := runReid(t, "--data-dir", dataDir, "model", "promote", version); err != nil {
			t.Fatalf("model promote: %v\n%s", err, out)
		}
		models.nudge()
		waitUntil(t, 30*time.Second, "the embedder to move to "+version, func() bool { return models.embeddingVersion() == version })
	}
	final := promotions[len(promotions)-1]
	time.Sleep(time.Second)
	if count, _ := vectors.Count(ctx, final); !models.pending() || count != 0 {
		t.Fatalf("with nothing archived the switch went on: pending %v, %d crops in %s's gallery", models.pending(), count, final)
	}

	archived := make(chan error, 1)
	archiveCtx, stopArchive := context.WithCancel(ctx)
	defer func() { stopArchive(); <-archived }()
	go func() { archived <- archive.Run(archiveCtx) }()
	waitUntil(t, 2*time.Minute, "the switch to finish", func() bool { return !models.pending() })
	count, err := vectors.Count(ctx, final)
	if err != nil || count != len(ids) || models.backfilled.Load() != int64(len(ids)) {
		t.Fatalf("%s's gallery holds %d crops (%v), %d backfilled; want all %d", final, count, err, models.backfilled.Load(), len(ids))
	}
	if active, err := vectors.Active(ctx); err != nil || active.Name != final {
		t.Fatalf("active gallery %+v (%v), want %s", active, err, final)
	}
}

func waitUntil(t *testing.T, within time.Duration, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !done(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
