// Package lease elects, among processes that share a store (a bucket's folder, or a directory),
// the one that holds a named lease: the lookup server that keeps the watches, the ingest process
// that runs a group's cameras. The holder renews the lease; when it stops it gives the lease up
// and another takes it at once, and when its machine is lost another takes it once the lease has
// gone unrenewed for the lease's TTL.
//
// No process trusts another's clock. A process takes a lease that is not its own only when the
// lease's content has stayed the same for the TTL by its own clock, and it gives up acting as the
// holder when half of that has passed since it last started a renewal that succeeded, which is
// sooner: by the time another takes a lease, its old holder has stopped. The store's conditional
// write (Swap) makes the taking itself a race with one winner.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"
)

// ErrChanged is returned by Store.Swap when the file is no longer the version the caller read.
var ErrChanged = errors.New("the file changed since it was read")

// Store keeps lease files and can write one only while it is as it was read. cropstore.Folder and
// Dir have it.
type Store interface {
	// ReadVersion returns a file and a version that every write changes; a missing file is an
	// error wrapping fs.ErrNotExist.
	ReadVersion(ctx context.Context, name string) ([]byte, string, error)
	// Swap writes a file only if it is still at version ("": only if there is none), and
	// otherwise returns an error wrapping ErrChanged. It returns the new version.
	Swap(ctx context.Context, name string, data []byte, version string) (string, error)
	// Remove deletes a file; removing one that is not there is no error.
	Remove(ctx context.Context, name string) error
	// Location names the store in logs.
	Location() string
}

// Claim is the lease file: who holds it, and where the others reach it.
type Claim struct {
	// Holder is the holding process's instance, new at each start (NewHolder).
	Holder string `json:"holder"`
	URL    string `json:"url"`
	// Renewed is for people reading the file (reid check); no process acts on another's clock.
	Renewed time.Time `json:"renewed"`
	// Released says the holder stopped and gave the lease up: anyone may take it at once.
	Released bool `json:"released,omitempty"`
}

// NewHolder returns a new instance id for a process's claims.
func NewHolder() string {
	var random [8]byte
	rand.Read(random[:])
	return hex.EncodeToString(random[:])
}

// Lease is one process's view of one lease. Its methods are called from one goroutine.
type Lease struct {
	store  Store
	name   string
	self   Claim
	ttl    time.Duration
	now    func() time.Time
	logger *slog.Logger

	// The version of the lease last read, and when this process first saw it.
	seenVersion string
	seenAt      time.Time
	// holding says this process holds the lease, until heldUntil.
	holding   bool
	heldUntil time.Time
	// current is the claim last read.
	current Claim
}

// New is holder's view (at url, for the others) of the lease kept in store under name, which may
// go unrenewed for ttl before another takes it; now is the clock (time.Now).
func New(store Store, name, holder, url string, ttl time.Duration, now func() time.Time, logger *slog.Logger) *Lease {
	return &Lease{store: store, name: name, self: Claim{Holder: holder, URL: url}, ttl: ttl, now: now, logger: logger}
}

// Renewal is how often the lease is to be stepped.
func (l *Lease) Renewal() time.Duration { return l.ttl / 5 }

// Current is the claim last read: the holder's (this process's when Step said it holds it).
func (l *Lease) Current() Claim { return l.current }

// Store is where the lease is kept.
func (l *Lease) Store() Store { return l.store }

// Step reads the lease and renews it, takes it or leaves it; it says whether this process holds
// the lease now. An error (the store unreachable) keeps a holder holding until half the TTL has
// passed since its last renewal.
func (l *Lease) Step(ctx context.Context) (bool, error) {
	start := l.now()
	if l.holding && !start.Before(l.heldUntil) {
		l.holding = false
	}
	data, version, err := l.store.ReadVersion(ctx, l.name)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l.holding, fmt.Errorf("reading the lease %s: %w", l.name, err)
	}
	var claim Claim
	if exists {
		if err := json.Unmarshal(data, &claim); err != nil {
			// A damaged lease is taken over like one whose holder stopped renewing it.
			l.logger.Warn("lease: cannot be read; it is taken over once it has not changed for a while", "lease", l.name, "store", l.store.Location(), "err", err)
			claim = Claim{}
		}
	}
	if version != l.seenVersion || l.seenAt.IsZero() {
		l.seenVersion, l.seenAt = version, start
	}
	mine := exists && claim.Holder == l.self.Holder && !claim.Released
	free := !exists || claim.Released || start.Sub(l.seenAt) >= l.ttl
	if !mine && !free {
		l.holding, l.current = false, claim
		return false, nil
	}
	if exists && !mine && !claim.Released && claim.Holder != "" {
		l.logger.Warn("lease: went unrenewed; taking it over", "lease", l.name, "holder", claim.URL, "unchanged_for", start.Sub(l.seenAt).Round(time.Second))
	}
	renewal := l.self
	renewal.Renewed = start.UTC()
	written, err := l.write(ctx, renewal, version)
	if errors.Is(err, ErrChanged) {
		// Another process renewed or took it meanwhile: the next step reads whose it is.
		l.holding = false
		return false, nil
	}
	if err != nil {
		return l.holding, fmt.Errorf("writing the lease %s: %w", l.name, err)
	}
	l.seenVersion, l.seenAt = written, start
	l.holding, l.heldUntil, l.current = true, start.Add(l.ttl/2), renewal
	return true, nil
}

func (l *Lease) write(ctx context.Context, claim Claim, version string) (string, error) {
	data, err := json.Marshal(claim)
	if err != nil {
		return "", err
	}
	return l.store.Swap(ctx, l.name, data, version)
}

// Release gives the lease up, if this process holds it, so that another takes it without
// waiting.
func (l *Lease) Release(ctx context.Context) error {
	if !l.holding {
		return nil
	}
	l.holding = false
	released := l.self
	released.Renewed, released.Released = l.now().UTC(), true
	_, err := l.write(ctx, released, l.seenVersion)
	if errors.Is(err, ErrChanged) {
		return nil // it was no longer ours
	}
	return err
}

// Read returns the claim kept in store under name; an error wrapping fs.ErrNotExist when nobody
// ever held it.
func Read(ctx context.Context, store Store, name string) (Claim, error) {
	data, _, err := store.ReadVersion(ctx, name)
	if err != nil {
		return Claim{}, err
	}
	var claim Claim
	if err := json.Unmarshal(data, &claim); err != nil {
		return Claim{}, fmt.Errorf("the lease %s in %s: %w", name, store.Location(), err)
	}
	return claim, nil
}

// CheckStore makes sure the store honours the conditions of Swap: an S3-compatible server that
// ignored If-None-Match and If-Match would let two processes take a lease at once. It leaves no
// file behind.
func CheckStore(ctx context.Context, store Store) error {
	probe := "lease-probe-" + NewHolder() // a name of its own: processes start together
	defer store.Remove(context.WithoutCancel(ctx), probe)
	version, err := store.Swap(ctx, probe, []byte("1"), "")
	if err != nil {
		return fmt.Errorf("writing %s: %w", probe, err)
	}
	for _, attempt := range []struct{ condition, version string }{{"If-None-Match", ""}, {"If-Match", version + "0"}} {
		_, err := store.Swap(ctx, probe, []byte("2"), attempt.version)
		if err == nil {
			return fmt.Errorf("%s ignores conditional writes (%s): a lease cannot be held by one process alone there", store.Location(), attempt.condition)
		}
		if !errors.Is(err, ErrChanged) {
			return fmt.Errorf("writing %s: %w", probe, err)
		}
	}
	return nil
}

// Run runs work while this process holds the lease, and stands by while another does, until ctx
// ends or work returns of itself (its work done), then gives the lease up. Work's context ends
// when the lease is lost: it must stop then, since another process may take the lease half a TTL
// later. Run returns work's error, or nil when ctx ended.
func (l *Lease) Run(ctx context.Context, work func(context.Context) error) error {
	defer func() {
		releaseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := l.Release(releaseCtx); err != nil {
			l.logger.Warn("lease: giving it up failed; another process takes it when it expires", "lease", l.name, "err", err)
		}
	}()
	ticker := time.NewTicker(l.Renewal())
	defer ticker.Stop()
	var stopWork context.CancelFunc
	done := make(chan error, 1)
	stop := func() error {
		stopWork()
		stopWork = nil
		return <-done
	}
	failing := false
	for {
		holding, err := l.Step(ctx)
		if err != nil && ctx.Err() == nil && !failing {
			l.logger.Error("lease: its store cannot be reached", "lease", l.name, "store", l.store.Location(), "err", err)
		}
		failing = err != nil
		switch {
		case holding && stopWork == nil:
			var workCtx context.Context
			workCtx, stopWork = context.WithCancel(ctx)
			go func() { done <- work(workCtx) }()
			l.logger.Info("lease: taken; this process works", "lease", l.name, "url", l.self.URL)
		case !holding && stopWork != nil:
			if err := stop(); err != nil {
				l.logger.Warn("lease: work stopped with an error", "lease", l.name, "err", err)
			}
			l.logger.Warn("lease: lost; this process stands by", "lease", l.name, "holder", l.current.URL)
		}
		select {
		case <-ctx.Done():
			if stopWork != nil {
				return stop()
			}
			return nil
		case err := <-done:
			stopWork()
			stopWork = nil
			return err
		case <-ticker.C:
		}
	}
}
