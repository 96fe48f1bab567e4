package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/embedder"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/ingest"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/model"
	"github.com/reid-project/reid/stream"
)

// modelFollower keeps a running pipeline on the model version the registry calls active (reid
// model promote, reid train --promote), without a restart. Vectors of two versions cannot be
// compared, so a switch goes in steps:
//
//  1. the live embedder moves to the new model and its gallery at a batch boundary, so every crop
//     it takes from the topic from then on is in the new gallery;
//  2. once the archiver has stored every crop written to the topic before that (the ones the old
//     model embedded), every stored crop the new gallery lacks is embedded from the crop store;
//  3. only then does the new gallery become the active one, and lookups move to it together with
//     its model, in one step.
//
// Until step 3, lookups read the old gallery with the old model, so a search never sees a
// half-filled gallery. A switch that is stopped (by reid stopping, or by yet another promote)
// resumes at the next start, or is replaced: the backfill skips what a gallery already holds.
// The same steps run at start when the registry's active version is not the index's.
//
// Without a crop store (reid embed, which runs beside an archiver elsewhere) only step 1 runs;
// `reid index backfill VERSION --activate` does the rest.
type modelFollower struct {
	options  config.Options
	registry *model.Registry
	vectors  index.Index
	live     *embedder.Embedder
	store    cropStore       // nil: step 1 only
	archive  archiveProgress // the archiver's group, whose progress step 2 waits for
	server   *lookup.Server  // nil when not serving
	nudges   chan struct{}

	mu             sync.Mutex
	embedding      *loadedModel // the live embedder's model
	serving        *loadedModel // the model of the gallery lookups read; nil when it cannot be loaded
	servingVersion string
	retired        []retiredModel
	current        *modelSwitch  // the last switch started; nil before any
	unloadable     string        // the last version that failed to load, to log it once
	retryDelay     time.Duration // before a failed backfill is tried again, doubling up to 30 times it

	// backfilled counts stored crops embedded by every switch so far (metrics read it).
	backfilled atomic.Int64
}

// modelSwitch is one run of steps 2 and 3 towards a version.
type modelSwitch struct {
	to     *loadedModel
	cancel context.CancelFunc
	done   chan struct{}
	// embedded counts the crops its tries embedded; final once done closes.
	embedded int64
}

// retiredModel is a model nothing uses any more, closed once requests that took it before a
// switch are surely done with it.
type retiredModel struct {
	model *loadedModel
	since time.Time
}

// retireGrace is how long a model stays loaded after lookups moved away from it: longer than
// any search request takes.
const retireGrace = 2 * time.Minute

// newModelFollower starts from the live embedder's model, embedding. Lookups read the index's
// active gallery: embedding's, or another, whose model it loads when withLookups (a lookup
// server will embed uploads with it). It takes ownership of embedding; close releases every
// model.
func newModelFollower(ctx context.Context, options config.Options, vectors index.Index, live *embedder.Embedder, embedding *loadedModel, withLookups bool) (*modelFollower, error) {
	registry, err := openRegistry(options)
	if err != nil {
		return nil, err
	}
	f := &modelFollower{options: options, registry: registry, vectors: vectors, live: live, embedding: embedding,
		nudges: make(chan struct{}, 1), retryDelay: 10 * time.Second}
	active, err := vectors.Active(ctx)
	switch {
	case errors.Is(err, index.ErrNoActiveVersion):
		active.Name = embedding.version.ID
	case err != nil:
		return nil, err
	}
	f.servingVersion = active.Name
	switch {
	case !withLookups:
		return f, nil
	case active.Name == embedding.version.ID:
		f.serving = embedding
		return f, nil
	}
	old, err := openModel(ctx, options, active.Name)
	switch {
	case err != nil:
		slog.Warn("model switch: cannot load the model of the gallery lookups read; search by image answers 503 until the switch is done",
			"serving", active.Name, "err", err)
	case old.network.Dim() != active.Dim:
		old.Close()
		slog.Warn("model switch: the model of the gallery lookups read has another dimension; search by image answers 503 until the switch is done",
			"serving", active.Name)
	default:
		f.serving = old
	}
	return f, nil
}

// lookupBackends is the gallery and embedder the lookup server starts with.
func (f *modelFollower) lookupBackends() (string, lookup.Embedder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.serving == nil {
		return f.servingVersion, nil
	}
	return f.servingVersion, f.serving.network
}

// run follows the registry until ctx ends, checking it every embedder.follow_interval (never
// when 0 or when embedder.model pins a version) and on nudge. A switch left pending at start (the
// embedder's model is not the gallery lookups read) starts at once. run returns once every
// switch it started has stopped.
func (f *modelFollower) run(ctx context.Context, store cropStore, archive archiveProgress, server *lookup.Server) {
	f.store, f.archive, f.server = store, archive, server
	defer f.stopSwitch()
	f.mu.Lock()
	pending := f.servingVersion != f.embedding.version.ID
	f.mu.Unlock()
	if pending && f.store != nil {
		slog.Info("model switch: the active model is not the active gallery's; backfilling its gallery from the crop store, lookups stay on the old gallery until it is done",
			"from", f.servingVersion, "to", f.embedding.version.ID)
		f.startSwitch(ctx, f.embedding)
	}
	var tick <-chan time.Time
	if interval := f.options.Embedder.FollowInterval; interval > 0 && f.options.Embedder.Model == "" {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-f.nudges:
		}
		f.check(ctx)
		f.closeRetired(time.Now())
	}
}

// start runs run on its own goroutine; the returned function stops it and waits.
func (f *modelFollower) start(ctx context.Context, store cropStore, archive archiveProgress, server *lookup.Server) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.run(ctx, store, archive, server)
	}()
	return func() { cancel(); <-done }
}

// nudge makes run check the registry now (on SIGHUP).
func (f *modelFollower) nudge() {
	select {
	case f.nudges <- struct{}{}:
	default:
	}
}

// check moves the live embedder to the registry's active version when it changed, and starts
// the backfill towards it.
func (f *modelFollower) check(ctx context.Context) {
	if f.options.Embedder.Model != "" {
		return
	}
	promoted, err := f.registry.Active()
	if err != nil {
		slog.Warn("model follow: cannot read the registry's active version; the embedder keeps its model", "err", err)
		return
	}
	f.mu.Lock()
	from := f.embedding
	reuse := f.serving
	f.mu.Unlock()
	if promoted.ID == from.version.ID {
		return
	}
	next := reuse
	if next == nil || next.version.ID != promoted.ID {
		next, err = openModel(ctx, f.options, promoted.ID)
		if err != nil {
			if f.unloadable != promoted.ID && ctx.Err() == nil {
				f.unloadable = promoted.ID
				slog.Error("model follow: the promoted version cannot be loaded; the embedder keeps its model", "promoted", promoted.ID, "embedding", from.version.ID, "err", err)
			}
			return
		}
	}
	if err := f.live.SwitchModel(ctx, next.network, promoted.ID); err != nil {
		f.release(next)
		slog.Error("model follow: cannot switch the embedder; it keeps its model", "promoted", promoted.ID, "err", err)
		return
	}
	f.mu.Lock()
	f.embedding = next
	f.mu.Unlock()
	slog.Info("model switch: new crops are embedded with the promoted version", "from", from.version.ID, "to", promoted.ID)
	if f.store != nil {
		f.startSwitch(ctx, next)
	}
	f.release(from)
}

// startSwitch stops the switch under way, if any, and starts one towards to.
func (f *modelFollower) startSwitch(ctx context.Context, to *loadedModel) {
	f.stopSwitch()
	switchCtx, cancel := context.WithCancel(ctx)
	sw := &modelSwitch{to: to, cancel: cancel, done: make(chan struct{})}
	f.mu.Lock()
	f.current = sw
	f.mu.Unlock()
	go f.runSwitch(switchCtx, sw)
}

// stopSwitch cancels the switch under way and waits for it.
func (f *modelFollower) stopSwitch() {
	f.mu.Lock()
	sw := f.current
	f.mu.Unlock()
	if sw != nil {
		sw.cancel()
		<-sw.done
	}
}

// runSwitch is steps 2 and 3, tried again after a failure (an unreachable crop store or index)
// until it succeeds or ctx ends. It closes sw.done when it returns.
func (f *modelFollower) runSwitch(ctx context.Context, sw *modelSwitch) {
	defer close(sw.done)
	version := sw.to.version.ID
	backoff := ingest.Backoff{Initial: f.retryDelay, Max: 30 * f.retryDelay}
	for attempt := 1; ; attempt++ {
		err := f.backfill(ctx, sw)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			slog.Info("model switch: backfill stopped (reid stopping: the next start resumes it; or another version promoted)", "to", version)
			return
		}
		delay := backoff.Delay(attempt)
		slog.Error("model switch: backfill failed; lookups stay on the old gallery, and it is tried again", "to", version, "err", err, "attempt", attempt, "delay", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
	// The gallery is active now, so lookups move even if the switch was just cancelled.
	f.mu.Lock()
	from, fromVersion := f.serving, f.servingVersion
	f.servingVersion = version
	if f.server != nil {
		f.serving = sw.to
	}
	f.mu.Unlock()
	if f.server != nil && fromVersion != version {
		f.server.Switch(f.vectors, version, sw.to.network)
	}
	f.release(from)
	slog.Info("model switch done: lookups read the new gallery", "from", fromVersion, "to", version, "backfilled", sw.embedded)
}

// backfill embeds into sw's gallery every stored crop it lacks, once the archiver has stored the
// ones already in the topic, and makes the gallery the active one.
func (f *modelFollower) backfill(ctx context.Context, sw *modelSwitch) error {
	version := sw.to.version.ID
	if err := waitForArchiver(ctx, f.archive); err != nil {
		return err
	}
	// A crop erased after the backfill read it must not be indexed: the store's record says so.
	backfill, err := embedder.New(ctx, embedder.Options{Model: sw.to.network, Version: version, Index: f.vectors, Erasures: f.store})
	if err != nil {
		return err
	}
	before := f.backfilled.Load()
	stats, err := backfillGallery(ctx, backfill, f.store, f.vectors, version, f.options.Embedder.BackfillShare, func(stats embedder.BackfillStats) {
		f.backfilled.Store(before + stats.Embedded)
	})
	f.backfilled.Store(before + stats.Embedded)
	sw.embedded += stats.Embedded
	if err != nil {
		return err
	}
	return f.vectors.Activate(ctx, version)
}

// archiveProgress is the archiver's consumer group's progress (stream.GroupProgress).
type archiveProgress interface {
	EndMarks(ctx context.Context) (stream.Marks, error)
	Passed(ctx context.Context, marks stream.Marks) (bool, error)
}

// waitForArchiver returns once the archiver has stored every crop written to the topic so far,
// so that a backfill reading the crop store then finds the crops the old model embedded. With no
// archiver to ask (nil), it returns at once.
func waitForArchiver(ctx context.Context, archive archiveProgress) error {
	if archive == nil {
		return nil
	}
	var marks stream.Marks
	started := time.Now()
	warned := false
	for {
		var err error
		if marks == nil {
			marks, err = archive.EndMarks(ctx)
		}
		if err == nil {
			var passed bool
			if passed, err = archive.Passed(ctx, marks); passed {
				return nil
			}
		}
		if !warned && time.Since(started) > 30*time.Second {
			warned = true
			slog.Warn("waiting for the archiver to store the crops already in the topic before reading the crop store", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// release retires a model unless the embedder, the lookups or the switch under way still use it.
func (f *modelFollower) release(m *loadedModel) {
	if m == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m == f.embedding || m == f.serving || (f.current != nil && m == f.current.to) {
		return
	}
	f.retired = append(f.retired, retiredModel{model: m, since: time.Now()})
}

// closeRetired closes the models retired before now minus retireGrace.
func (f *modelFollower) closeRetired(now time.Time) {
	f.mu.Lock()
	var kept []retiredModel
	var closing []*loadedModel
	for _, retired := range f.retired {
		if now.Sub(retired.since) >= retireGrace {
			closing = append(closing, retired.model)
		} else {
			kept = append(kept, retired)
		}
	}
	f.retired = kept
	f.mu.Unlock()
	for _, m := range closing {
		m.Close()
	}
}

// pending reports whether a switch is under way: lookups read another gallery than the one the
// embedder writes, or a backfill into the gallery they read is still running (after a promote
// back to it, some crops went to the other gallery meanwhile).
func (f *modelFollower) pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.servingVersion != f.embedding.version.ID {
		return true
	}
	if f.current == nil {
		return false
	}
	select {
	case <-f.current.done:
		return false
	default:
		return true
	}
}

// embeddingVersion is the version the live embedder writes.
func (f *modelFollower) embeddingVersion() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.embedding.version.ID
}

// wait returns once the switch under way, if any, is done, or ctx ends.
func (f *modelFollower) wait(ctx context.Context) {
	f.mu.Lock()
	sw := f.current
	f.mu.Unlock()
	if sw == nil {
		return
	}
	select {
	case <-sw.done:
	case <-ctx.Done():
	}
}

// close releases every model; call it once run has returned and the lookup server has stopped.
func (f *modelFollower) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	closed := map[*loadedModel]bool{}
	for _, m := range append([]*loadedModel{f.embedding, f.serving}, retiredModels(f.retired)...) {
		if m != nil && !closed[m] {
			closed[m] = true
			m.Close()
		}
	}
	f.retired = nil
}

func retiredModels(retired []retiredModel) []*loadedModel {
	models := make([]*loadedModel, len(retired))
	for i, r := range retired {
		models[i] = r.model
	}
	return models
}
