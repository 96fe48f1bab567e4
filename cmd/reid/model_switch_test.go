package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
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
		// failingWalks is how many times the crop store fails the backfill's walk.
		failingWalks int
	}{
		{"promote", []string{"v2"}, 0},
		{"promote another during the switch", []string{"v2", "v3"}, 0},
		{"promote back during the switch", []string{"v2", "v1"}, 0},
		{"the crop store fails the backfill twice", []string{"v2"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) { checkModelSwitchWaits(t, tc.promotions, tc.failingWalks) })
	}
}

// failingStore fails its first walks, as a crop store in a bucket that cannot be reached.
type failingStore struct {
	cropStore
	failures atomic.Int32
}

func (s *failingStore) Walk(ctx context.Context, filter cropstore.Filter, fn func(cropstore.CropRecord) error) error {
	if s.failures.Add(-1) >= 0 {
		return errors.New("crop store unreachable")
	}
	return s.cropStore.Walk(ctx, filter, fn)
}

func checkModelSwitchWaits(t *testing.T, promotions []string, failingWalks int) {
	dataDir := pipelineFixture(t)
	for range 2 {
		importOSNet(t, dataDir)
	}
	options := loadOptions(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn := startTestBroker(t, ctx, options)
	ids := produceCrops(t, options, conn, "lobby", 20)
	vectors := openTestIndex(t, ctx, options)
	store, err := openCropStore(ctx, options)
	if err != nil {
		t.Fatal(err)
	}
	first, err := openModel(ctx, options, "v1")
	if err != nil {
		t.Fatal(err)
	}
	stage, err := newEmbedStage(ctx, options, conn, first, vectors, nil)
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
	models.retryDelay = 20 * time.Millisecond
	flaky := &failingStore{cropStore: store}
	flaky.failures.Store(int32(failingWalks))
	defer models.start(ctx, flaky, archive.Progress(), nil)()

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
	if left := flaky.failures.Load(); left > 0 {
		t.Errorf("the backfill walked the store %d times fewer than it failed", left)
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

// TestEmbedFollowsPromotedModel runs `reid embed` as its own process, as at scale, and promotes a
// version while it runs: the crops before the promote stay in v1's gallery, those after it go
// into v2's, and `reid index backfill v2 --activate` then completes v2's from the crop store once
// the archiver has stored them.
func TestEmbedFollowsPromotedModel(t *testing.T) {
	dataDir := pipelineFixture(t)
	importOSNet(t, dataDir)
	options := loadOptions(t, dataDir)
	broker, conn := startLoopbackBroker(t, dataDir, options)
	opsAddr := freeAddr(t)
	env := []string{"REID_STREAM_BROKERS=" + broker.Addrs()[0], "REID_OPS_ADDR=" + opsAddr, "REID_EMBEDDER_FOLLOW_INTERVAL=100ms"}
	child := startChild(t, dataDir, env, "embed")
	defer child.Process.Kill()
	before := produceCrops(t, options, conn, "gate", 20)
	waitForMetric(t, child, opsAddr, `reid_embedder_crops_total`, float64(len(before)), 2*time.Minute)
	if out, err := runReid(t, "--data-dir", dataDir, "model", "promote", "v2"); err != nil {
		t.Fatalf("model promote: %v\n%s", err, out)
	}
	waitForMetric(t, child, opsAddr, `reid_embedder_model{version="v2"}`, 1, time.Minute)
	after := produceCrops(t, options, conn, "hall", 20)
	waitForMetric(t, child, opsAddr, `reid_embedder_crops_total`, float64(len(before)+len(after)), 2*time.Minute)
	child.Process.Signal(syscall.SIGTERM)
	if err := child.Wait(); err != nil {
		t.Fatalf("reid embed: %v", err)
	}

	counts := func() map[string]int {
		vectors, err := openIndex(context.Background(), options)
		if err != nil {
			t.Fatal(err)
		}
		defer vectors.Close()
		counts := map[string]int{}
		for _, version := range []string{"v1", "v2"} {
			if counts[version], err = vectors.Count(context.Background(), version); err != nil {
				t.Fatal(err)
			}
		}
		return counts
	}
	if got := counts(); got["v1"] != len(before) || got["v2"] != len(after) {
		t.Fatalf("galleries %v: want the %d crops before the promote in v1 and the %d after it in v2", got, len(before), len(after))
	}
	// The backfill waits for the archiver (here `reid archive`, started after it) to store every
	// crop in the topic before it reads the crop store.
	t.Setenv("REID_STREAM_BROKERS", broker.Addrs()[0])
	type result struct {
		out string
		err error
	}
	backfilled := make(chan result, 1)
	go func() {
		out, err := runReid(t, "--data-dir", dataDir, "index", "backfill", "v2", "--activate")
		backfilled <- result{out, err}
	}()
	select {
	case r := <-backfilled:
		t.Fatalf("the backfill read the crop store before the archiver had stored anything: %v\n%s", r.err, r.out)
	case <-time.After(time.Second):
	}
	archiver := startChild(t, dataDir, []string{"REID_STREAM_BROKERS=" + broker.Addrs()[0]}, "archive")
	defer archiver.Process.Kill()
	var r result
	select {
	case r = <-backfilled:
	case <-time.After(2 * time.Minute):
		t.Fatal("the backfill did not finish within 2 minutes of the archiver starting")
	}
	if want := fmt.Sprintf("%d already in the gallery, %d embedded", len(after), len(before)); r.err != nil || !strings.Contains(r.out, want) {
		t.Fatalf("index backfill v2 --activate: %v\n%s\nwant %q", r.err, r.out, want)
	}
	if got := counts(); got["v2"] != len(before)+len(after) {
		t.Fatalf("after the backfill v2 holds %d crops, want %d", got["v2"], len(before)+len(after))
	}
}
