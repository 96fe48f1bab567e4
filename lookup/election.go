package lookup

// With lookup.watch_server: elect, the lookup servers sharing a watch store elect the one that
// keeps the watches, rather than an operator naming it: whoever holds a lease kept in the store
// checks the watches, raises the alerts and delivers the webhooks, and the others forward the
// watch routes to the URL the lease names. When the holder stops, it gives the lease up and
// another takes it at once; when its machine is lost, another takes it once the lease has gone
// unrenewed for watchLeaseTTL. The new holder loads every watch, alert and webhook cursor from the
// store and goes on from there: a check looks at the whole watch window and knows the alerts
// already raised, so the handover neither misses a sighting nor repeats an alert (a webhook may
// get its last batch again, as after a restart: at least once).
//
// No server trusts another's clock. A server takes a lease that is not its own only when the
// lease's content has stayed the same for watchLeaseTTL by its own clock, and it gives up acting
// as the holder when half of that has passed since it last started a renewal that succeeded, which
// is sooner: by the time another takes a lease, its old holder has stopped. The store's
// conditional write (Swap) makes the taking itself a race with one winner.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/reid-project/reid/cropstore"
)

const (
	watchLeaseFile = "watch-server.lease"
	// watchLeaseTTL is how long a lease may go unrenewed before another server takes it. A holder
	// acts on a renewal for half of it, and renews every fifth.
	watchLeaseTTL = 15 * time.Second
)

// swapStore is a WatchStore that can write a file only while it is as it was read: what the
// election needs, so that two servers never both take the lease. dirWatchStore and
// cropstore.Folder have it.
type swapStore interface {
	WatchStore
	// ReadVersion returns a file and a version that every write changes; a missing file is an
	// error wrapping fs.ErrNotExist.
	ReadVersion(ctx context.Context, name string) ([]byte, string, error)
	// Swap writes a file only if it is still at version ("": only if there is none), and
	// otherwise returns an error wrapping cropstore.ErrChanged. It returns the new version.
	Swap(ctx context.Context, name string, data []byte, version string) (string, error)
}

// watchLease is the lease file: who keeps the watches, and where the others reach it.
type watchLease struct {
	// Holder is the holding server's instance, new at each start.
	Holder string `json:"holder"`
	URL    string `json:"url"`
	// Renewed is for people reading the file (reid check); no server acts on another's clock.
	Renewed time.Time `json:"renewed"`
	// Released says the holder stopped and gave the lease up: anyone may take it at once.
	Released bool `json:"released,omitempty"`
}

// election is one server's view of the lease. Its methods are called from one goroutine
// (Server.runElection).
type election struct {
	store  swapStore
	self   watchLease
	ttl    time.Duration // watchLeaseTTL, shorter in tests
	now    func() time.Time
	logger *slog.Logger

	// The version of the lease last read, and when this server first saw it.
	seenVersion string
	seenAt      time.Time
	// holding says this server holds the lease, until heldUntil.
	holding   bool
	heldUntil time.Time
	// current is the lease last read; its URL is where the watch routes go.
	current watchLease
}

// step reads the lease and renews it, takes it or leaves it; it says whether this server holds
// the lease now. An error (the store unreachable) keeps a holder holding until heldUntil.
func (e *election) step(ctx context.Context) (bool, error) {
	start := e.now()
	if e.holding && !start.Before(e.heldUntil) {
		e.holding = false
	}
	data, version, err := e.store.ReadVersion(ctx, watchLeaseFile)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return e.holding, fmt.Errorf("reading the watch server's lease: %w", err)
	}
	var lease watchLease
	if exists {
		if err := json.Unmarshal(data, &lease); err != nil {
			// A damaged lease is taken over like one whose holder stopped renewing it.
			e.logger.Warn("lookup: the watch server's lease cannot be read; it is taken over once it has not changed for a while", "store", e.store.Location(), "err", err)
			lease = watchLease{}
		}
	}
	if version != e.seenVersion || e.seenAt.IsZero() {
		e.seenVersion, e.seenAt = version, start
	}
	mine := exists && lease.Holder == e.self.Holder && !lease.Released
	free := !exists || lease.Released || start.Sub(e.seenAt) >= e.ttl
	if !mine && !free {
		e.holding, e.current = false, lease
		return false, nil
	}
	if exists && !mine && !lease.Released && lease.Holder != "" {
		e.logger.Warn("lookup: the watch server's lease went unrenewed; taking it over", "holder", lease.URL, "unchanged_for", start.Sub(e.seenAt).Round(time.Second))
	}
	claim := e.self
	claim.Renewed = start.UTC()
	written, err := e.write(ctx, claim, version)
	if errors.Is(err, cropstore.ErrChanged) {
		// Another server renewed or took it meanwhile: the next step reads whose it is.
		e.holding = false
		return false, nil
	}
	if err != nil {
		return e.holding, fmt.Errorf("writing the watch server's lease: %w", err)
	}
	e.seenVersion, e.seenAt = written, start
	e.holding, e.heldUntil, e.current = true, start.Add(e.ttl/2), claim
	return true, nil
}

func (e *election) write(ctx context.Context, lease watchLease, version string) (string, error) {
	data, err := json.Marshal(lease)
	if err != nil {
		return "", err
	}
	return e.store.Swap(ctx, watchLeaseFile, data, version)
}

// release gives the lease up, if this server holds it, so that another takes it without waiting.
func (e *election) release(ctx context.Context) error {
	if !e.holding {
		return nil
	}
	e.holding = false
	released := e.self
	released.Renewed, released.Released = e.now().UTC(), true
	_, err := e.write(ctx, released, e.seenVersion)
	if errors.Is(err, cropstore.ErrChanged) {
		return nil // it was no longer ours
	}
	return err
}

// checkSwaps makes sure the store honours the conditions of Swap: an S3-compatible server that
// ignored If-None-Match and If-Match would let two servers take the lease at once, and each keep
// the watches. It leaves no file behind.
func checkSwaps(ctx context.Context, store swapStore) error {
	var random [6]byte
	rand.Read(random[:])
	probe := "watch-server.probe-" + hex.EncodeToString(random[:]) // a name of its own: servers start together
	defer store.Remove(context.WithoutCancel(ctx), probe)
	version, err := store.Swap(ctx, probe, []byte("1"), "")
	if err != nil {
		return fmt.Errorf("writing %s: %w", probe, err)
	}
	for _, attempt := range []struct{ condition, version string }{{"If-None-Match", ""}, {"If-Match", version + "0"}} {
		_, err := store.Swap(ctx, probe, []byte("2"), attempt.version)
		if err == nil {
			return fmt.Errorf("%s ignores conditional writes (%s): the servers cannot elect one watch server safely there; name one instead (lookup.watch_server: its URL)", store.Location(), attempt.condition)
		}
		if !errors.Is(err, cropstore.ErrChanged) {
			return fmt.Errorf("writing %s: %w", probe, err)
		}
	}
	return nil
}

// ReadWatchLease returns the lease of the lookup server elected to keep the watches in store
// (lookup.watch_server: elect); an error wrapping fs.ErrNotExist when none was ever elected.
func ReadWatchLease(ctx context.Context, store WatchStore) (holderURL string, renewed time.Time, released bool, err error) {
	data, err := store.Read(ctx, watchLeaseFile)
	if err != nil {
		return "", time.Time{}, false, err
	}
	var lease watchLease
	if err := json.Unmarshal(data, &lease); err != nil {
		return "", time.Time{}, false, fmt.Errorf("the watch server's lease in %s: %w", store.Location(), err)
	}
	return lease.URL, lease.Renewed, lease.Released, nil
}

// WatchServerElect is Config.WatchServer (lookup.watch_server) for servers that elect the one that
// keeps the watches.
const WatchServerElect = "elect"

// watchesForwarded says another server, named by URL, keeps the watches.
func (c Config) watchesForwarded() bool {
	return c.WatchServer != "" && c.WatchServer != WatchServerElect
}

func newElection(store swapStore, url string, ttl time.Duration, now func() time.Time, logger *slog.Logger) *election {
	var random [8]byte
	rand.Read(random[:])
	return &election{store: store, self: watchLease{Holder: hex.EncodeToString(random[:]), URL: url}, ttl: ttl, now: now, logger: logger}
}

// runElection takes part in the election until ctx ends, keeping the watches while this server
// is elected, and gives the lease up when it ends.
func (s *Server) runElection(ctx context.Context) {
	e := s.election
	var stopKeeping context.CancelFunc
	var keeping sync.WaitGroup
	stop := func() {
		if stopKeeping != nil {
			stopKeeping()
			keeping.Wait()
			stopKeeping = nil
		}
		s.watches.Store(nil)
		s.metrics.watchServer.Set(0)
	}
	defer func() {
		stop()
		releaseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := e.release(releaseCtx); err != nil {
			s.logger.Warn("lookup: giving up the watch server's lease failed; another server takes it when it expires", "err", err)
		}
	}()
	ticker := time.NewTicker(e.ttl / 5)
	defer ticker.Stop()
	failing := false
	for {
		holding, err := e.step(ctx)
		if err != nil && ctx.Err() == nil && !failing {
			s.logger.Error("lookup: the watch server's election cannot reach its store", "store", e.store.Location(), "err", err)
		}
		failing = err != nil
		switch {
		case holding && stopKeeping == nil:
			list, err := openWatches(ctx, e.store, s.logger)
			if err != nil {
				// Still the holder: the next step tries again, and the others get 503 meanwhile.
				s.logger.Error("lookup: elected to keep the watches, but they cannot be loaded", "err", err)
				break
			}
			s.watches.Store(list)
			s.metrics.watches.Set(float64(list.count()))
			s.metrics.watchServer.Set(1)
			keepCtx, cancel := context.WithCancel(ctx)
			stopKeeping = cancel
			keeping.Go(func() { s.keepWatches(keepCtx, list) })
			s.logger.Info("lookup: elected to keep the watches", "url", e.self.URL, "watches", list.count())
		case !holding && stopKeeping != nil:
			stop()
			s.logger.Warn("lookup: no longer keeps the watches", "watch_server", e.current.URL)
		}
		elected := e.current.URL
		s.electedURL.Store(&elected)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// defaultAdvertiseURL is how other servers reach one listening on addr when lookup.advertise_url
// is not set: the host addr names, or this machine's name when addr listens on every address.
func defaultAdvertiseURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("lookup: addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("lookup: this machine's name, for lookup.advertise_url: %w", err)
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
