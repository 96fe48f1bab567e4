package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/embedder"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/lookup"
)

// modelSwitch is what reid run does when the registry's active model (reid model promote) is not
// the index's active gallery: new crops go into the new model's gallery at once, every stored
// crop is embedded into it in the background, and only then do lookups move to it, in one step.
// Until then they read the old gallery with the old model, so a search never sees a half-filled
// gallery. A run stopped midway resumes at its next start (the backfill skips what is there).
type modelSwitch struct {
	from      string       // the gallery lookups read until the backfill is done
	fromModel *loadedModel // its model, for image search; nil if it could not be loaded
	to        *loadedModel
	done      chan struct{}
	stats     embedder.BackfillStats
	err       error
	// backfilled counts crops embedded so far (metrics read it while the backfill runs).
	backfilled atomic.Int64
}

// prepareModelSwitch returns nil when the index's active gallery is the loaded model's.
func prepareModelSwitch(ctx context.Context, options config.Options, vectors index.Index, loaded *loadedModel) (*modelSwitch, error) {
	active, err := vectors.Active(ctx)
	if err != nil || active.Name == loaded.version.ID {
		return nil, err
	}
	sw := &modelSwitch{from: active.Name, to: loaded, done: make(chan struct{})}
	old, err := openModel(ctx, options, active.Name)
	switch {
	case err != nil:
		slog.Warn("model switch: cannot load the model of the gallery lookups read now; they move to the new gallery at once and see more of it as the backfill goes",
			"from", active.Name, "to", loaded.version.ID, "err", err)
		sw.from = ""
	case old.network.Dim() != active.Dim:
		old.Close()
		slog.Warn("model switch: the old model's dimension does not match its gallery; lookups move to the new gallery at once",
			"from", active.Name, "to", loaded.version.ID)
		sw.from = ""
	default:
		sw.fromModel = old
	}
	slog.Info("model switch: backfilling the new model's gallery from the crop store; lookups stay on the old gallery until it is done",
		"from", active.Name, "to", loaded.version.ID)
	return sw, nil
}

// lookupBackends is the gallery and embedder the lookup server starts with.
func (sw *modelSwitch) lookupBackends(loaded *loadedModel) (string, lookup.Embedder) {
	if sw != nil && sw.fromModel != nil {
		return sw.from, sw.fromModel.network
	}
	return loaded.version.ID, loaded.network
}

// run backfills the new gallery, activates it and moves the lookup server (nil when not serving)
// to it. It closes sw.done when it returns.
func (sw *modelSwitch) run(ctx context.Context, store cropStore, vectors index.Index, server *lookup.Server) {
	defer close(sw.done)
	version := sw.to.version.ID
	backfill, err := embedder.New(ctx, embedder.Options{Model: sw.to.network, Version: version, Index: vectors})
	if err == nil {
		sw.stats, err = backfillGallery(ctx, backfill, store, vectors, version, func(stats embedder.BackfillStats) {
			sw.backfilled.Store(stats.Embedded)
		})
		sw.backfilled.Store(sw.stats.Embedded)
	}
	if err == nil {
		err = vectors.Activate(ctx, version)
	}
	if err != nil {
		sw.err = err
		if errors.Is(err, context.Canceled) {
			slog.Info("model switch: backfill stopped; it resumes at the next start", "to", version)
		} else {
			slog.Error("model switch: backfill failed; lookups stay on the old gallery, and the next start retries", "to", version, "err", err)
		}
		return
	}
	if server != nil {
		server.Switch(vectors, version, sw.to.network)
	}
	slog.Info("model switch done: lookups read the new gallery", "from", sw.from, "to", version, "backfilled", sw.stats.Embedded)
}

// close releases the old model; call it after the lookup server has stopped.
func (sw *modelSwitch) close() {
	if sw != nil && sw.fromModel != nil {
		sw.fromModel.Close()
	}
}
