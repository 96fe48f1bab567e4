// Package retention deletes person crops from the crop store and their vectors from every model
// version's gallery: those older than a site may keep (Prune, Run), and those a person asks to
// have erased (Find, Erase). Person images are personal data, so a site's retention period is
// usually a legal limit, and it holds for every gallery, not just the active one.
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/reid-project/reid/index"
)

// Store is the crop store's part (cropstore.Local).
type Store interface {
	DeleteBefore(ctx context.Context, t time.Time) (int, error)
	DeleteCameraBefore(ctx context.Context, camera string, t time.Time) (int, error)
}

// Index is the vector index's part (index.Index).
type Index interface {
	Versions(ctx context.Context) ([]index.Version, error)
	DeleteBefore(ctx context.Context, version string, t time.Time) (int, error)
	DeleteCameraBefore(ctx context.Context, version, camera string, t time.Time) (int, error)
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
	return prune(ctx, store, vectors, "", cutoff)
}

// PruneCamera is Prune for one camera's crops and vectors.
func PruneCamera(ctx context.Context, store Store, vectors Index, camera string, cutoff time.Time) (Result, error) {
	return prune(ctx, store, vectors, camera, cutoff)
}

// prune deletes what is older than cutoff: of camera, or of every camera when camera is "".
func prune(ctx context.Context, store Store, vectors Index, camera string, cutoff time.Time) (Result, error) {
	result := Result{Cutoff: cutoff}
	what := ""
	if camera != "" {
		what = " of camera " + camera
	}
	if vectors != nil {
		versions, err := vectors.Versions(ctx)
		if err != nil {
			return result, fmt.Errorf("retention: %w", err)
		}
		for _, version := range versions {
			var deleted int
			if camera == "" {
				deleted, err = vectors.DeleteBefore(ctx, version.Name, cutoff)
			} else {
				deleted, err = vectors.DeleteCameraBefore(ctx, version.Name, camera, cutoff)
			}
			result.Vectors += deleted
			if err != nil {
				return result, fmt.Errorf("retention: gallery %s%s: %w", version.Name, what, err)
			}
		}
	}
	if store != nil {
		var deleted int
		var err error
		if camera == "" {
			deleted, err = store.DeleteBefore(ctx, cutoff)
		} else {
			deleted, err = store.DeleteCameraBefore(ctx, camera, cutoff)
		}
		result.Crops = deleted
		if err != nil {
			return result, fmt.Errorf("retention: crop store%s: %w", what, err)
		}
	}
	return result, nil
}

// Policy is how long a site keeps crops: MaxAge for every camera (0 keeps them), and PerCamera
// shorter periods for some (a camera that sees more than the others should keep).
type Policy struct {
	MaxAge    time.Duration
	PerCamera map[string]time.Duration
}

// Prune applies the policy as of now; the result sums every camera's, with the cutoff of MaxAge
// (or of the last camera pruned, without one).
func (p Policy) Prune(ctx context.Context, store Store, vectors Index, now time.Time) (Result, error) {
	var total Result
	add := func(result Result) {
		total.Cutoff, total.Vectors, total.Crops = result.Cutoff, total.Vectors+result.Vectors, total.Crops+result.Crops
	}
	for _, camera := range slices.Sorted(maps.Keys(p.PerCamera)) {
		result, err := PruneCamera(ctx, store, vectors, camera, now.Add(-p.PerCamera[camera]))
		add(result)
		if err != nil {
			return total, err
		}
	}
	if p.MaxAge > 0 {
		result, err := Prune(ctx, store, vectors, now.Add(-p.MaxAge))
		add(result)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Options configures Run.
type Options struct {
	// Policy is how long crops are kept; Interval how often Run prunes.
	Policy   Policy
	Interval time.Duration
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
		result, err := options.Policy.Prune(ctx, store, vectors, options.Now())
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
