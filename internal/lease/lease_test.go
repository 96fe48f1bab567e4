package lease_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/cropstore/s3test"
	"github.com/reid-project/reid/internal/lease"
)

var testStart = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// stores are the stores a lease is kept in: a directory, and a bucket's folder (on the fake, and
// on a real S3-compatible server when REIDTEST_S3_ENDPOINT names one).
func stores(t *testing.T) map[string]lease.Store {
	t.Helper()
	kept := map[string]lease.Store{"directory": lease.Dir(t.TempDir())}
	for _, bucket := range s3test.Buckets(t, "leases") {
		store, err := cropstore.OpenS3(context.Background(), cropstore.S3Options{Endpoint: bucket.Endpoint, Bucket: bucket.Name, Region: bucket.Region, AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		folder, err := store.Folder("@leases")
		if err != nil {
			t.Fatal(err)
		}
		kept["bucket-"+bucket.Kind] = folder
	}
	return kept
}

// unreachableStore is a store whose reads and writes fail while down is set: a holder cut
// off from the store.
type unreachableStore struct {
	lease.Store
	down atomic.Bool
}

func (u *unreachableStore) ReadVersion(ctx context.Context, name string) ([]byte, string, error) {
	if u.down.Load() {
		return nil, "", errors.New("connection refused")
	}
	return u.Store.ReadVersion(ctx, name)
}

func (u *unreachableStore) Swap(ctx context.Context, name string, data []byte, version string) (string, error) {
	if u.down.Load() {
		return "", errors.New("connection refused")
	}
	return u.Store.Swap(ctx, name, data, version)
}

// TestLeaseTimeline steps three processes' views of one lease through its life on a shared
// clock: one takes the lease and the others follow it while it is renewed; a holder cut off from
// the store stops acting as holder before anyone takes over, and its lease is taken once it has
// gone unrenewed for the TTL; a holder that stops gives the lease up and another takes it at
// once; a damaged lease is taken over like an unrenewed one.
func TestLeaseTimeline(t *testing.T) {
	for name, shared := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clock := &testClock{now: testStart}
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			const ttl = 10 * time.Second
			stores := make([]*unreachableStore, 3)
			servers := make([]*lease.Lease, 3)
			for i := range servers {
				stores[i] = &unreachableStore{Store: shared}
				servers[i] = lease.New(stores[i], "watch-server.lease", lease.NewHolder(), fmt.Sprintf("http://10.0.0.%d:8080", i+1), ttl, clock.Now, logger)
			}
			// stepAll steps every server and returns which ones hold the lease.
			stepAll := func(at time.Duration) []int {
				t.Helper()
				clock.Set(testStart.Add(at))
				var holders []int
				for i, server := range servers {
					holding, err := server.Step(ctx)
					if err != nil && !stores[i].down.Load() {
						t.Fatalf("server %d at %v: %v", i, at, err)
					}
					if holding {
						holders = append(holders, i)
					}
				}
				return holders
			}
			expect := func(at time.Duration, want ...int) {
				t.Helper()
				holders := stepAll(at)
				if fmt.Sprint(holders) != fmt.Sprint(want) {
					t.Fatalf("at %v the holders are %v, want %v", at, holders, want)
				}
			}

			expect(0, 0)
			for _, server := range servers[1:] {
				if server.Current().URL != "http://10.0.0.1:8080" {
					t.Fatalf("a follower forwards to %q", server.Current().URL)
				}
			}
			for at := 2 * time.Second; at <= 30*time.Second; at += 2 * time.Second {
				expect(at, 0) // renewed every step: never taken over
			}

			// Server 0 is cut off from the store at 30 s: it holds on for half the TTL after its
			// last renewal, then stops; the others take over only once the lease has gone
			// unrenewed for the whole TTL.
			stores[0].down.Store(true)
			expect(32*time.Second, 0)
			expect(34*time.Second, 0)
			expect(36 * time.Second) // 30 s + ttl/2 passed: nobody acts as the holder
			expect(38 * time.Second)
			expect(40*time.Second, 1) // unchanged for 10 s since the followers saw it at 30 s
			stores[0].down.Store(false)
			expect(42*time.Second, 1) // back, it finds the lease taken and follows
			if servers[0].Current().URL != "http://10.0.0.2:8080" {
				t.Errorf("the old holder now forwards to %q", servers[0].Current().URL)
			}

			// Server 1 stops and gives the lease up: the first to step next takes it.
			if err := servers[1].Release(ctx); err != nil {
				t.Fatal(err)
			}
			expect(43*time.Second, 0)
			expect(45*time.Second, 0)

			// A damaged lease goes to whoever sees it unchanged for the TTL.
			_, version, err := shared.ReadVersion(ctx, "watch-server.lease")
			if err == nil {
				_, err = shared.Swap(ctx, "watch-server.lease", []byte("{not json"), version)
			}
			if err != nil {
				t.Fatal(err)
			}
			clock.Set(testStart.Add(46 * time.Second))
			for i := range servers { // everyone sees the damaged file from 46 s
				if holding, _ := servers[i].Step(ctx); holding {
					t.Fatalf("server %d holds a damaged lease at once", i)
				}
			}
			expect(50 * time.Second)
			if holders := stepAll(56 * time.Second); len(holders) != 1 {
				t.Errorf("after the damaged lease went unchanged for the TTL, holders %v, want one", holders)
			}
		})
	}
}

// TestRun: of two processes running work under one lease, one works and the other stands by,
// never both at once; when the first stops, the second works at its next look; a holder cut off
// from the store stops its work within half the TTL; work that ends of itself gives the lease up.
func TestRun(t *testing.T) {
	store := lease.Dir(t.TempDir())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	const ttl = 2 * time.Second
	var working [2]atomic.Bool
	var both atomic.Bool
	finish := make(chan struct{})
	work := func(i int) func(context.Context) error {
		return func(ctx context.Context) error {
			working[i].Store(true)
			defer working[i].Store(false)
			if working[1-i].Load() {
				both.Store(true)
			}
			select {
			case <-ctx.Done():
			case <-finish:
			}
			return nil
		}
	}
	waitFor := func(what string, condition func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !condition() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stores := [2]*unreachableStore{{Store: store}, {Store: store}}
	var cancels [2]context.CancelFunc
	var results [2]chan error
	for i := range 2 {
		held := lease.New(stores[i], "ingest-north.lease", lease.NewHolder(), fmt.Sprintf("process %d", i), ttl, time.Now, logger)
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i], results[i] = cancel, make(chan error, 1)
		go func() { results[i] <- held.Run(ctx, work(i)) }()
		if i == 0 {
			waitFor("the first process to work", working[0].Load)
		}
	}
	defer cancels[1]()
	time.Sleep(2 * ttl) // the second looks several times
	if working[1].Load() {
		t.Fatal("the second process works while the first holds the lease")
	}

	stopped := time.Now()
	cancels[0]()
	if err := <-results[0]; err != nil {
		t.Fatal(err)
	}
	waitFor("the second process to take over", working[1].Load)
	if took := time.Since(stopped); took > ttl/2 {
		t.Errorf("the second process took over %v after the first stopped; a released lease is taken at the next look", took)
	}

	// Cut off from the store, the second stops working within half the TTL of its last renewal.
	stores[1].down.Store(true)
	cut := time.Now()
	waitFor("the cut-off process to stop working", func() bool { return !working[1].Load() })
	if took := time.Since(cut); took > ttl/2+ttl/5+100*time.Millisecond {
		t.Errorf("the cut-off holder worked on for %v", took)
	}
	stores[1].down.Store(false)
	waitFor("the process to work again once the store is back", working[1].Load)

	// Work that ends of itself ends Run and gives the lease up.
	close(finish)
	if err := <-results[1]; err != nil {
		t.Fatal(err)
	}
	if claim, err := lease.Read(context.Background(), store, "ingest-north.lease"); err != nil || !claim.Released || claim.URL != "process 1" {
		t.Errorf("the lease after the work ended: %+v (%v), want released by process 1", claim, err)
	}
	if both.Load() {
		t.Error("both processes worked at once")
	}
}
