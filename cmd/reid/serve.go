package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/backup"
	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/lookup"
)

func newServeCommand(g *globals) *cobra.Command {
	var addr string
	command := &cobra.Command{
		Use:   "serve [--addr HOST:PORT]",
		Short: "Serve the person-search API and web page",
		Long: "Serves the lookup API (/v1, OpenAPI at /v1/openapi.json) and the web page on lookup.addr\n" +
			"(loopback by default). It answers /healthz at once and /readyz with 503 until the index is\n" +
			"open; search by image waits for the model of the active gallery to load. Without API keys\n" +
			"(lookup.api_keys, lookup.api_keys_file) it listens only on loopback unless\n" +
			"lookup.allow_unauthenticated is set. Every search is appended to the audit log\n" +
			"(lookup.audit_log, default <data_dir>/audit.log). Watches (POST /v1/watches) are kept in\n" +
			"<data_dir>/watches (in the bucket, with the crop store there) and checked every\n" +
			"lookup.watch_interval; with several servers, give them all lookup.watch_server: elect\n" +
			"(they elect one to keep the watches and forward the watch routes to it; another takes\n" +
			"over when it stops), or keep the watches on one and give the others its URL.\n" +
			"POST /v1/erasures deletes a person's crops and their vectors on request, and records the\n" +
			"erasure in the crop store so that no stage keeps them again; at start the server erases\n" +
			"again whatever that record names (after a restore). POST /v1/validation/people labels a\n" +
			"person for the validation set. Both need an admin key (lookup.admin_api_keys), or,\n" +
			"without keys, a client on this machine.\n" +
			"SIGHUP reopens the audit log at its path (after logrotate has moved it) and takes up the\n" +
			"configuration's API keys again: a key deleted from its file stops working, without a restart.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			load := func() (config.Options, error) {
				options, err := g.load(cmd)
				if err != nil {
					return options, err
				}
				if cmd.Flags().Changed("addr") {
					options.Lookup.Addr = addr
				}
				return options, options.Validate()
			}
			options, err := load()
			if err != nil {
				return err
			}
			return runServe(cmd.Context(), options, load)
		},
	}
	command.Flags().StringVar(&addr, "addr", "", "listen address HOST:PORT (overrides lookup.addr; default 127.0.0.1:8080)")
	return command
}

// runServe serves until ctx is cancelled. The index and model load in the background so that the
// process is live (and says it is not ready) while a large gallery opens. On SIGHUP it reopens the
// audit log and, when load is not nil, takes up the keys of the configuration load reads again.
func runServe(ctx context.Context, options config.Options, load func() (config.Options, error)) error {
	store, err := openCropStore(ctx, options)
	if err != nil {
		return err
	}
	server, auditLog, err := newLookupServer(options, lookup.Config{Store: store})
	if err != nil {
		return err
	}
	defer auditLog.Close()
	defer onHangup(ctx, func(ctx context.Context) {
		auditLog.reopen(ctx)
		if load == nil {
			return
		}
		loaded, err := load()
		if err != nil {
			slog.Error("reload: configuration not read; the lookup keys are unchanged", "err", err)
			return
		}
		reloadLookupKeys(server, loaded)
	})()
	stopOps, err := startOps(ctx, options.Ops)
	if err != nil {
		return err
	}
	defer stopOps()

	loadCtx, cancelLoad := context.WithCancel(ctx)
	loaded := make(chan func(), 1)
	go func() { loaded <- loadLookupBackends(loadCtx, options, server) }()

	serveErr := server.Serve(ctx, options.Lookup.Addr)
	cancelLoad()
	closeBackends := <-loaded
	closeBackends()
	return serveErr
}

// newLookupServer builds the lookup server from the configuration's lookup section around base
// (which names the store, and the index and embedder when already open), with the audit log
// opened for appending. `reid run` calls it with its own index, store and model, then
// server.Serve(ctx, options.Lookup.Addr). The caller closes the audit log.
func newLookupServer(options config.Options, base lookup.Config) (*lookup.Server, *auditFile, error) {
	lookupConfig, err := lookup.ConfigFrom(options.Lookup)
	if err != nil {
		return nil, nil, err
	}
	lookupConfig.Index, lookupConfig.IndexVersion = base.Index, base.IndexVersion
	lookupConfig.Store, lookupConfig.Embedder = base.Store, base.Embedder
	lookupConfig.Collectors = base.Collectors
	lookupConfig.ValidationDir = validationDir(options, "")
	if options.CropStore.Backend == "local" {
		cropsDir := backupSources(options).Crops
		lookupConfig.ErasureRecorded = func(context.Context) {
			// An erasure made after the newest backup must be in its record, or restoring it would
			// bring the person back (backup/erasures.go).
			copied, dest, err := backup.CopyErasures(options.DataDir, cropsDir)
			switch {
			case err != nil:
				slog.Warn("erasure: not copied into the newest backup; it is in no backup until the next one", "backup", dest, "err", err)
			case copied > 0:
				slog.Info("erasure: copied into the newest backup's record of erasures", "backup", dest, "files", copied)
			}
		}
	}
	keepsWatches := options.Lookup.WatchServer == "" || options.Lookup.WatchServer == lookup.WatchServerElect
	if options.Lookup.WatchInterval > 0 && keepsWatches {
		if lookupConfig.WatchStore, err = watchStore(options, base.Store); err != nil {
			return nil, nil, err
		}
		lookupConfig.Retention = options.Retention.MaxAge
		lookupConfig.RetentionPerCamera = retentionPolicy(options.Retention).PerCamera
	}
	auditPath := auditLogPath(options)
	if err := os.MkdirAll(filepath.Dir(auditPath), 0o755); err != nil {
		return nil, nil, fmt.Errorf("audit log: %w", err)
	}
	audit, err := openAuditFile(auditPath)
	if err != nil {
		return nil, nil, err
	}
	lookupConfig.Audit = audit
	lookupConfig.Logger = slog.Default()
	server, err := lookup.New(lookupConfig)
	if err != nil {
		audit.Close()
		return nil, nil, err
	}
	slog.Info("lookup audit log", "path", auditPath)
	return server, audit, nil
}

// loadLookupBackends opens the index and the model of its active gallery and hands them to the
// server as each becomes ready. It returns the function that closes what it opened. Failures are
// logged: the server keeps answering (503 for what is missing) so an operator can see why.
func loadLookupBackends(ctx context.Context, options config.Options, server *lookup.Server) func() {
	vectors, err := openIndex(ctx, options)
	if err != nil {
		if ctx.Err() == nil {
			slog.Error("lookup: cannot open the index; searches answer 503", "err", err)
		}
		return func() {}
	}
	closeAll := func() { vectors.Close() }
	active, err := vectors.Active(ctx)
	if errors.Is(err, index.ErrNoActiveVersion) {
		// No gallery yet: search by crop id answers 503 until a model is promoted and the
		// server restarted, because the embedder must be the model of the searched gallery.
		slog.Warn("lookup: the index has no active model version yet (reid model promote); searches answer 503 until then")
		server.SetIndex(vectors, "")
		return closeAll
	}
	if err != nil {
		if ctx.Err() == nil {
			slog.Error("lookup: reading the active model version", "err", err)
		}
		return closeAll
	}
	// Pin searches to the active gallery, so uploads embedded by its model are compared only with
	// that model's vectors; followActiveGallery moves gallery and model together when another
	// version is activated.
	server.SetIndex(vectors, active.Name)
	slog.Info("lookup: index ready", "version", active.Name, "vectors", active.Count, "dim", active.Dim)
	model, err := openModel(ctx, options, active.Name)
	if err != nil {
		slog.Error("lookup: cannot load the model of the active gallery; search by image answers 503", "version", active.Name, "err", err)
		return closeAll
	}
	if dim := model.network.Dim(); dim != active.Dim {
		slog.Error("lookup: model and gallery dimensions differ; search by image disabled", "model_dim", dim, "gallery_dim", active.Dim)
		return func() { model.Close(); vectors.Close() }
	}
	server.SetEmbedder(model.network)
	slog.Info("lookup: embedder ready", "version", active.Name)
	if options.Lookup.FollowInterval <= 0 {
		return func() { model.Close(); vectors.Close() }
	}
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan []*loadedModel, 1)
	go func() {
		followed <- followActiveGallery(followCtx, options, vectors, server, active.Name, options.Lookup.FollowInterval)
	}()
	return func() {
		stopFollowing()
		for _, loaded := range <-followed {
			loaded.Close()
		}
		model.Close()
		vectors.Close()
	}
}

// followActiveGallery moves the server to the index's active gallery, with that version's model
// for uploads, whenever another version is activated (reid run after a model switch, reid index
// backfill --activate, possibly in another process with Milvus). It checks every interval until
// ctx ends and returns the models it loaded, for the caller to close once nothing serves them:
// a request may still be using the previous one right after a switch.
func followActiveGallery(ctx context.Context, options config.Options, vectors index.Index, server *lookup.Server, serving string, interval time.Duration) []*loadedModel {
	var loaded []*loadedModel
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return loaded
		case <-ticker.C:
		}
		active, err := vectors.Active(ctx)
		if err != nil || active.Name == serving {
			continue
		}
		model, err := openModel(ctx, options, active.Name)
		if err != nil {
			slog.Error("lookup: another gallery is active but its model cannot be loaded; still serving the previous one", "active", active.Name, "serving", serving, "err", err)
			continue
		}
		if model.network.Dim() != active.Dim {
			model.Close()
			slog.Error("lookup: the active gallery's model has another dimension; still serving the previous gallery", "active", active.Name)
			continue
		}
		server.Switch(vectors, active.Name, model.network)
		loaded = append(loaded, model)
		slog.Info("lookup: moved to the newly active gallery", "from", serving, "to", active.Name, "vectors", active.Count)
		serving = active.Name
	}
}
