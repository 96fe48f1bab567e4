package lookup

// With lookup.watch_server: elect, the lookup servers sharing a watch store elect the one that
// keeps the watches, rather than an operator naming it: whoever holds a lease kept in the store
// (internal/lease) checks the watches, raises the alerts and delivers the webhooks, and the others
// forward the watch routes to the URL the lease names. When the holder stops, it gives the lease
// up and another takes it at once; when its machine is lost, another takes it once the lease has
// gone unrenewed for watchLeaseTTL. The new holder loads every watch, alert and webhook cursor
// from the store and goes on from there: a check looks at the whole watch window and knows the
// alerts already raised, so the handover neither misses a sighting nor repeats an alert (a webhook
// may get its last batch again, as after a restart: at least once).

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/reid-project/reid/internal/lease"
)

const (
	watchLeaseFile = "watch-server.lease"
	// watchLeaseTTL is how long a lease may go unrenewed before another server takes it. A holder
	// acts on a renewal for half of it, and renews every fifth.
	watchLeaseTTL = 15 * time.Second
)

// swapStore is a WatchStore that is also a lease.Store: what the election needs, so that two
// servers never both take the lease. dirWatchStore and cropstore.Folder have it.
type swapStore interface {
	WatchStore
	lease.Store
}

// ReadWatchLease returns the lease of the lookup server elected to keep the watches in store
// (lookup.watch_server: elect); an error wrapping fs.ErrNotExist when none was ever elected.
func ReadWatchLease(ctx context.Context, store WatchStore) (lease.Claim, error) {
	swaps, ok := store.(swapStore)
	if !ok {
		return lease.Claim{}, fmt.Errorf("the watch store %s keeps no lease", store.Location())
	}
	return lease.Read(ctx, swaps, watchLeaseFile)
}

// WatchServerElect is Config.WatchServer (lookup.watch_server) for servers that elect the one that
// keeps the watches.
const WatchServerElect = "elect"

// watchesForwarded says another server, named by URL, keeps the watches.
func (c Config) watchesForwarded() bool {
	return c.WatchServer != "" && c.WatchServer != WatchServerElect
}

// runElection takes part in the election until ctx ends, keeping the watches while this server
// is elected, and gives the lease up when it ends.
func (s *Server) runElection(ctx context.Context) {
	election := s.election
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
		if err := election.Release(releaseCtx); err != nil {
			s.logger.Warn("lookup: giving up the watch server's lease failed; another server takes it when it expires", "err", err)
		}
	}()
	ticker := time.NewTicker(election.Renewal())
	defer ticker.Stop()
	failing := false
	for {
		holding, err := election.Step(ctx)
		if err != nil && ctx.Err() == nil && !failing {
			s.logger.Error("lookup: the watch server's election cannot reach its store", "store", election.Store().Location(), "err", err)
		}
		failing = err != nil
		switch {
		case holding && stopKeeping == nil:
			list, err := openWatches(ctx, s.config.WatchStore, s.logger)
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
			s.logger.Info("lookup: elected to keep the watches", "url", s.config.AdvertiseURL, "watches", list.count())
		case !holding && stopKeeping != nil:
			stop()
			s.logger.Warn("lookup: no longer keeps the watches", "watch_server", election.Current().URL)
		}
		elected := election.Current().URL
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
