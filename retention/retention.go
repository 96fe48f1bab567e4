// Package retention deletes person crops from the crop store and their vectors from every model
// version's gallery: those older than a site may keep (Prune, Run), and those a person asks to
// have erased (Find, Erase). Person images are personal data, so a site's retention period is
// usually a legal limit, and it holds for every gallery, not just the active one.
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/reid-project/reid/index"
)

// Store is the crop store's part (cropstore.Local).
type Store interface {
	DeleteBefore(ctx context.Context, t time.Time) (int, error)
}

// Index is the vector index's part (index.Index).
type Index interface {
	Versions(ctx context.Context) ([]index.Version, error)
	DeleteBefore(ctx context.Context, version string, t time.Time) (int, error)
}

// Result says what one prune removed.
type Result struct {
	Cutoff time.Time
	// Vectors counts deletions summed over galleries; Crops counts crops deleted from the store.
	Vectors, Crops int
}

// Prune deletes everything older than cutoff: the vectors first, so that a lookup never returns
// a crop whose image is already gone, then the crops. Either store or vectors may be nil (a
// process that owns only one of them).
func Prune(ctx context.Context, store Store, vectors Index, cutoff time.Time) (Result, error) {
	result := Result{Cutoff: cutoff}
	if vectors != nil {
		versions, err := vectors.Versions(ctx)
		if err != nil {
			return result, fmt.Errorf("retention: %w", err)
		}
		for _, version := range versions {
			deleted, err := vectors.DeleteBefore(ctx, version.Name, cutoff)
			result.Vectors += deleted
			if err != nil {
				return result, fmt.Errorf("retention: gallery %s: %w", version.Name, err)
			}
		}
	}
	if store != nil {
		deleted, err := store.DeleteBefore(ctx, cutoff)
		result.Crops = deleted
		if err != nil {
			return result, fmt.Errorf("retention: crop store: %w", err)
		}
	}
	return result, nil
}

// Options configures Run.
type Options struct {
	// MaxAge is how long crops are kept; Interval how often Run prunes.
	MaxAge, Interval time.Duration
	// Now defaults to time.Now; Logger to slog.Default().
	Now    func() time.Time
	Logger *slog.Logger
	// Pruned, when set, receives each successful prune's result (metrics).
	Pruned func(Result)
}

// Run prunes at once and then every Interval until ctx ends. A failed prune is logged and retried
// at the next tick: retention must not stop the pipeline.
func Run(ctx context.Context, store Store, vectors Index, options Options) {
	if options.Now == nil {
		options.Now = time.Now
	}
	if options.Logger == nil {
		options.Logger = slog.Default()
	}
	ticker := time.NewTicker(options.Interval)
	defer ticker.Stop()
	for {
		result, err := Prune(ctx, store, vectors, options.Now().Add(-options.MaxAge))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			options.Logger.Error("retention: prune failed; retrying at the next interval", "err", err, "interval", options.Interval)
		default:
			if result.Vectors > 0 || result.Crops > 0 {
				options.Logger.Info("retention: pruned", "before", result.Cutoff, "vectors", result.Vectors, "crops", result.Crops)
			}
			if options.Pruned != nil {
				options.Pruned(result)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
