package main

import (
	"context"
	"errors"
	"log/slog"
	"reflect"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/ingest"
	"github.com/reid-project/reid/lookup"
)

// reconfigurer is what a camera reload changes: the running ingester.
type reconfigurer interface {
	Reconfigure(ctx context.Context, cameras []config.Camera) (added, removed, restarted []string, err error)
}

// reloadCamerasOnHangup re-reads the configuration on every SIGHUP and applies its camera list to
// the running ingest: cameras are added, removed or restarted without stopping the broker, the
// embedder or the lookup. A configuration that does not load leaves the cameras as they are.
// Other settings, but for the lookup's keys, take effect at the next start, and a reload that
// changes them says so. Each SIGHUP also calls also (when not nil) with what was loaded, or the
// error that loading it gave. The returned function stops listening and waits.
func reloadCamerasOnHangup(ctx context.Context, ingester reconfigurer, current config.Options, load func() (config.Options, error),
	also func(ctx context.Context, loaded config.Options, err error)) (stop func()) {
	return onHangup(ctx, func(ctx context.Context) {
		loaded, err := load()
		current = reloadCameras(ctx, ingester, current, loaded, err)
		if also != nil {
			also(ctx, loaded, err)
		}
	})
}

// reloadCameras applies one loaded configuration (or its error) and returns the configuration now
// in force.
func reloadCameras(ctx context.Context, ingester reconfigurer, current config.Options, loaded config.Options, err error) config.Options {
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
	if !reflect.DeepEqual(withoutReloadable(current), withoutReloadable(loaded)) {
		slog.Warn("reload: settings other than cameras and lookup keys changed; they take effect when reid restarts")
	}
	current.Cameras = loaded.Cameras
	current.Lookup = withKeys(current.Lookup, loaded.Lookup)
	return current
}

// withoutReloadable is options without what a reload applies: the cameras and the lookup's keys.
func withoutReloadable(options config.Options) config.Options {
	options.Cameras = nil
	options.Lookup = withKeys(options.Lookup, config.Lookup{})
	return options
}

// withKeys is lookup with the keys of keys.
func withKeys(lookup, keys config.Lookup) config.Lookup {
	lookup.APIKeys, lookup.APIKeysFile = keys.APIKeys, keys.APIKeysFile
	lookup.AdminAPIKeys, lookup.AdminAPIKeysFile = keys.AdminAPIKeys, keys.AdminAPIKeysFile
	lookup.ScopedAPIKeys = keys.ScopedAPIKeys
	return lookup
}

// reloadLookupKeys gives a running lookup server the keys of a reloaded configuration: revoking a
// key (deleting its line from a keys file, then SIGHUP) needs no restart, and neither does
// changing what a scope sees. Keys that do not load leave the server's as they were.
func reloadLookupKeys(server *lookup.Server, loaded config.Options) {
	keys, err := lookup.ConfigFrom(loaded.Lookup)
	if err == nil {
		err = server.SetKeys(keys)
	}
	if err != nil {
		slog.Error("reload: lookup keys not changed", "err", err)
		return
	}
	var scopes []string
	for _, scope := range keys.ScopedAPIKeys {
		scopes = append(scopes, scope.Name)
	}
	slog.Info("reload: lookup keys", "api_keys", len(keys.APIKeys), "admin_keys", len(keys.AdminAPIKeys), "scopes", scopes)
}
