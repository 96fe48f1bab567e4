package main

import (
	"context"
	"errors"
	"log/slog"
	"reflect"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/ingest"
)

// reconfigurer is what a camera reload changes: the running ingester.
type reconfigurer interface {
	Reconfigure(ctx context.Context, cameras []config.Camera) (added, removed, restarted []string, err error)
}

// reloadCamerasOnHangup re-reads the configuration on every SIGHUP and applies its camera list to
// the running ingest: cameras are added, removed or restarted without stopping the broker, the
// embedder or the lookup. A configuration that does not load leaves the cameras as they are.
// Other settings take effect at the next start, and a reload that changes them says so. Each
// SIGHUP also calls also (when not nil). The returned function stops listening and waits.
func reloadCamerasOnHangup(ctx context.Context, ingester reconfigurer, current config.Options, load func() (config.Options, error), also func()) (stop func()) {
	return onHangup(ctx, func(ctx context.Context) {
		current = reloadCameras(ctx, ingester, current, load)
		if also != nil {
			also()
		}
	})
}

// reloadCameras applies one reload and returns the configuration now in force.
func reloadCameras(ctx context.Context, ingester reconfigurer, current config.Options, load func() (config.Options, error)) config.Options {
	loaded, err := load()
	if err == nil && len(loaded.Cameras) == 0 {
		err = errors.New("no cameras configured (stop reid to stop every camera)")
	}
	if err != nil {
		slog.Error("reload: configuration not applied; the cameras are unchanged", "err", err)
		return current
	}
	added, removed, restarted, err := ingester.Reconfigure(ctx, loaded.Cameras)
	if err != nil {
		if errors.Is(err, ingest.ErrNotRunning) {
			err = errors.New("every camera has ended; start reid again to add cameras")
		}
		slog.Error("reload: cameras not changed", "err", err)
		return current
	}
	slog.Info("reload: cameras changed", "added", added, "removed", removed, "restarted", restarted, "cameras", len(loaded.Cameras))
	before, after := current, loaded
	before.Cameras, after.Cameras = nil, nil
	if !reflect.DeepEqual(before, after) {
		slog.Warn("reload: settings other than cameras changed; they take effect when reid restarts")
	}
	current.Cameras = loaded.Cameras
	return current
}
