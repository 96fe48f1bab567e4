package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/reid-project/reid/archiver"
	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/detector"
	"github.com/reid-project/reid/embedder"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/ingest"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/stream"
)

func newRunCommand(g *globals) *cobra.Command {
	var flags runFlags
	command := &cobra.Command{
		Use:   "run",
		Short: "Run the whole pipeline on one machine: broker, ingest, embedder, archiver, index, lookup",
		Long: "Starts the embedded Kafka-protocol broker (unless stream.brokers is set), ingest for every\n" +
			"configured camera (or --source/--camera), the embedder, the archiver, the index and the\n" +
			"lookup API and web page (lookup.addr).\n" +
			"SIGINT/SIGTERM shut it down gracefully: ingest stops, the producer flushes, and the\n" +
			"embedder and archiver go on until they have taken in everything in the crops topic (for at\n" +
			"most 15s; what is left then waits in the broker for the next start).\n" +
			"SIGHUP re-reads the configuration and applies its cameras: new ones start, removed ones\n" +
			"stop, changed ones restart; everything else keeps running. The lookup takes up its API keys\n" +
			"and key scopes again (a revoked key stops working).\n" +
			"A model version promoted while it runs (reid model promote, reid train --promote) is taken up\n" +
			"within embedder.follow_interval, or at once on SIGHUP: new crops are embedded with it, the\n" +
			"stored ones are backfilled into its gallery, and then lookups move to that gallery.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags.load = func() (config.Options, error) {
				options, err := g.load(cmd)
				if err != nil {
					return options, err
				}
				if flags.source != "" {
					options.Cameras = append(options.Cameras, config.Camera{ID: flags.camera, Source: flags.source})
				}
				return options, options.Validate()
			}
			options, err := flags.load()
			if err != nil {
				return err
			}
			if len(options.Cameras) == 0 {
				return errors.New("no cameras: configure cameras or give --source and --camera")
			}
			return runPipeline(cmd.Context(), cmd.OutOrStdout(), options, flags)
		},
	}
	command.Flags().BoolVar(&flags.exitWhenDone, "exit-when-done", false,
		"stop once every camera has ended (files) and every crop is embedded and archived")
	command.Flags().StringVar(&flags.source, "source", "", "add one source (with --camera) to the configured cameras")
	command.Flags().StringVar(&flags.camera, "camera", "cam1", "camera id for --source")
	command.Flags().Int64Var(&flags.maxFrames, "max-frames", 0, "stop each camera after this many frames; 0 = no limit")
	command.Flags().BoolVar(&flags.asJSON, "json", false, "print the summary as one JSON object")
	command.Flags().BoolVar(&flags.serve, "serve", true, "serve the lookup API and web page on lookup.addr while running")
	return command
}

type runFlags struct {
	// load reads the configuration as the command line gives it, again on each SIGHUP; nil: no reloads.
	load         func() (config.Options, error)
	exitWhenDone bool
	source       string
	camera       string
	maxFrames    int64
	asJSON       bool
	serve        bool
}

// runSummary is what `reid run` reports at the end.
type runSummary struct {
	Frames       int64 `json:"frames"`
	Detections   int64 `json:"detections"`
	Crops        int64 `json:"crops"`
	Produced     int64 `json:"produced"`
	Embedded     int64 `json:"embedded"`
	Archived     int64 `json:"archived"`
	DeadLettered int64 `json:"dead_lettered"`
	Indexed      int   `json:"indexed"`
	// Backfilled counts stored crops embedded into a new model's gallery after a model switch.
	Backfilled int64 `json:"backfilled,omitempty"`
	// SwitchPending: lookups still read an older model's gallery, whose switch the next start resumes.
	SwitchPending bool    `json:"switch_pending,omitempty"`
	Model         string  `json:"model"`
	Seconds       float64 `json:"seconds"`
}

func runPipeline(ctx context.Context, out io.Writer, options config.Options, flags runFlags) error {
	started := time.Now()
	if options.Ingest.FailoverGroup != "" {
		slog.Warn("ingest.failover_group is for reid ingest on several machines; reid run runs its cameras itself", "group", options.Ingest.FailoverGroup)
	}
	conn, closeBroker, err := openStream(ctx, options, true)
	if err != nil {
		return err
	}
	defer closeBroker()
	vectors, err := openIndex(ctx, options)
	if err != nil {
		return err
	}
	defer vectors.Close()
	store, err := openCropStore(ctx, options)
	if err != nil {
		return err
	}
	loaded, err := openModel(ctx, options, "")
	if err != nil {
		return err
	}
	embedStage, err := newEmbedStage(ctx, options, conn, loaded, vectors, store)
	if err != nil {
		loaded.Close()
		return err
	}
	models, err := newModelFollower(ctx, options, vectors, embedStage.embedder, loaded, flags.serve)
	if err != nil {
		loaded.Close()
		return err
	}
	defer models.close()
	archiveStage, archive, err := newArchiveStage(options, conn, store)
	if err != nil {
		return err
	}
	producer, err := stream.NewProducer(conn, stream.ProducerOptionsFrom(options.Stream))
	if err != nil {
		return err
	}
	ingester, err := newIngester(options, withoutErased{sink: producer, erasures: store}, flags.maxFrames)
	if err != nil {
		return err
	}
	metrics := &pipelineMetrics{
		ingester: ingester, producer: producer, embedder: embedStage.embedder, archive: archive, vectors: vectors, models: models, dataDir: options.DataDir,
		consumers: map[string]*stream.Consumer{options.Stream.EmbedGroup: embedStage.consumer, options.Stream.ArchiveGroup: archiveStage},
	}
	defer startRetention(ctx, options, store, vectors, metrics.pruned)()
	defer startBrokerPurge(ctx, options, conn, store, metrics)()
	stopOps, err := startOps(ctx, options.Ops, metrics)
	if err != nil {
		return err
	}
	defer stopOps()
	serverDone := make(chan error, 1)
	serverCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	var server *lookup.Server
	var auditLog *auditFile
	if flags.serve {
		version, queryEmbedder := models.lookupBackends()
		server, auditLog, err = newLookupServer(options, lookup.Config{
			Index: vectors, IndexVersion: version, Store: store, Embedder: queryEmbedder,
			Collectors: []prometheus.Collector{metrics},
		})
		if err != nil {
			return err
		}
		defer auditLog.Close()
		go func() { serverDone <- server.Serve(serverCtx, options.Lookup.Addr) }()
	} else {
		serverDone <- nil
	}
	// The follower and its backfill stop before the index and the models close (deferred
	// earlier, so later), and before the summary reads them.
	stopFollowing := sync.OnceFunc(models.start(ctx, store, archiveStage.Progress(), server))
	defer stopFollowing()

	// Consumers outlive ingest: they run until a signal and then until they have caught up with
	// what ingest handed over before it (for at most shutdownDrain), or, with --exit-when-done,
	// until they have caught up with everything in the crops topic (this run's records and any
	// backlog). A consumer's failure stops them all.
	consumerCtx, stopConsumers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsumers()
	waitCtx, cancelWait := context.WithCancel(consumerCtx)
	defer cancelWait()
	defer context.AfterFunc(ctx, cancelWait)()
	var consumers sync.WaitGroup
	consumerErrs := make(chan error, 2)
	for _, consumer := range []*stream.Consumer{embedStage.consumer, archiveStage} {
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			if err := consumer.Run(consumerCtx); err != nil && !errors.Is(err, context.Canceled) {
				consumerErrs <- err
				stopConsumers()
			}
		}()
	}

	stopProgress := startProgress(ingester)
	stopReloads := func() {}
	if flags.load != nil {
		stopReloads = reloadCamerasOnHangup(ctx, ingester, options, flags.load, func(ctx context.Context, loaded config.Options, err error) {
			models.nudge()
			if auditLog != nil {
				auditLog.reopen(ctx)
			}
			if server != nil && err == nil {
				reloadLookupKeys(server, loaded)
			}
		})
	}
	ingestErr := ingester.Run(ctx, options.Cameras)
	stopReloads()
	stopProgress()
	// Flush even after a signal: what ingest accepted must reach the broker.
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	if err := producer.Close(flushCtx); err != nil {
		slog.Error("producer flush", "err", err)
	}
	cancelFlush()
	if ingestErr != nil {
		slog.Error("ingest", "err", ingestErr)
	}
	produced := producer.Stats().Produced
	if flags.exitWhenDone && ctx.Err() == nil {
		waitCaughtUp(waitCtx, embedStage.consumer, archiveStage)
		models.wait(waitCtx)
	} else {
		<-waitCtx.Done()
	}
	if ctx.Err() != nil && consumerCtx.Err() == nil {
		// A signal: the crops ingest handed over just before it are embedded and archived now,
		// so that they are searchable while reid is stopped, unless that takes too long.
		drainCtx, cancelDrain := context.WithTimeout(consumerCtx, shutdownDrain)
		waitCaughtUp(drainCtx, embedStage.consumer, archiveStage)
		if drainCtx.Err() != nil && consumerCtx.Err() == nil {
			slog.Warn("stopping with crops not yet embedded or archived; they wait in the broker for the next start", "waited", shutdownDrain)
		}
		cancelDrain()
	}
	stopConsumers()
	consumers.Wait()
	close(consumerErrs)
	stopServer()
	serverErr := <-serverDone

	stopFollowing()
	summary := runSummary{Model: models.embeddingVersion(), Backfilled: models.backfilled.Load(), SwitchPending: models.pending(),
		Seconds: time.Since(started).Seconds()}
	ingestStats := ingester.Stats()
	summary.Frames, summary.Detections, summary.Crops = ingestStats.Frames, ingestStats.Detections, ingestStats.Crops
	summary.Produced = produced
	embedStats := embedStage.consumer.Stats()
	summary.Embedded = embedStage.embedder.Stats().Embedded
	summary.Archived = archive.Archived()
	summary.DeadLettered = embedStats.DeadLettered
	countCtx, cancelCount := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	summary.Indexed, _ = vectors.Count(countCtx, summary.Model)
	cancelCount()
	if flags.asJSON {
		if err := json.NewEncoder(out).Encode(summary); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "frames %d  crops %d  produced %d  embedded %d  archived %d  dead-lettered %d  indexed %d (model %s)  %.1fs\n",
			summary.Frames, summary.Crops, summary.Produced, summary.Embedded, summary.Archived,
			summary.DeadLettered, summary.Indexed, summary.Model, summary.Seconds)
		switch {
		case summary.SwitchPending:
			fmt.Fprintf(out, "model switch to %s not finished (%d stored crops embedded into its gallery so far): lookups read the old gallery, and the next start resumes it\n", summary.Model, summary.Backfilled)
		case summary.Backfilled > 0:
			fmt.Fprintf(out, "model switch: %d stored crops embedded into %s's gallery, which lookups now read\n", summary.Backfilled, summary.Model)
		}
	}
	errs := []error{serverErr}
	for err := range consumerErrs {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, ingestErr)...)
}

// shutdownDrain bounds how long `reid run` goes on consuming after a signal: long enough for the
// crops of the last seconds, short of what service managers allow a stop (systemd: 90s).
const shutdownDrain = 15 * time.Second

// waitCaughtUp returns once every consumer's group has committed every record in its topic, or
// ctx ends. Call it after the producer has flushed. It reads offsets from the broker rather than
// counting this process's records, so a backlog left by an earlier, killed run is waited for too.
func waitCaughtUp(ctx context.Context, consumers ...*stream.Consumer) {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	warned := false
	for {
		caughtUp := true
		for _, consumer := range consumers {
			lag, err := consumer.Lag(ctx)
			if err != nil && ctx.Err() == nil {
				// Once loudly (an operator may need to grant the group's describe rights), then
				// quietly while retrying.
				level := slog.LevelDebug
				if !warned {
					level, warned = slog.LevelWarn, true
				}
				slog.Log(ctx, level, "cannot read the consumer group's lag; still waiting", "err", err)
			}
			if err != nil || lag > 0 {
				caughtUp = false
				break
			}
		}
		if caughtUp {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// withoutErased keeps the crops of tracks erased while still in view out of sink (the broker),
// which would otherwise hold them until stream.topic_retention: it refuses them as the crop store
// does, and ingest passes over them. Where the record of erasures cannot be read, the crop goes on
// to the archiver and the embedder, which do not store a crop before they have read it.
type withoutErased struct {
	sink     ingest.Sink
	erasures embedder.Erasures
}

func (w withoutErased) Put(ctx context.Context, record cropstore.CropRecord) error {
	if erased, err := w.erasures.Erased(ctx, record); err == nil && erased {
		return fmt.Errorf("%w: crop %s (camera %s, track %d)", cropstore.ErrErased, record.ID, record.Camera, record.Track)
	}
	return w.sink.Put(ctx, record)
}

// newIngester builds the ingest stage writing crops to sink.
func newIngester(options config.Options, sink ingest.Sink, maxFrames int64) (*ingest.Ingester, error) {
	modelsDir := detectorModelsDir(options)
	detector.SetThreads(options.Detector.Threads)
	return ingest.New(ingest.Options{
		Ingest:   options.Ingest,
		Detector: options.Detector,
		Tracker:  options.Tracker,
		Crops:    options.Crops,
		NewDetector: func(settings config.Detector) (ingest.Detector, error) {
			found, err := newDetector(settings, modelsDir)
			if err != nil {
				return nil, err
			}
			return found, nil
		},
		Sink:      sink,
		MaxFrames: maxFrames,
	})
}

// newDetector loads a detector; a missing model file says which settings locate the models.
func newDetector(settings config.Detector, modelsDir string) (*detector.Detector, error) {
	found, err := detector.New(settings, modelsDir)
	if errors.Is(err, fs.ErrNotExist) {
		// The usual cause on a new machine: the shared assets are elsewhere.
		return nil, fmt.Errorf("%w (detector models are read from %s: set detector.models_dir, or shared_dir with --shared-dir or REID_SHARED_DIR)", err, modelsDir)
	}
	return found, err
}

// embedStage is the embedder with the consumer that feeds it.
type embedStage struct {
	embedder *embedder.Embedder
	consumer *stream.Consumer
}

// newEmbedStage makes the model's gallery (activating it when the index has no active version
// yet) and the consumer that feeds the embedder, which drops the crops erasures (the crop store's
// record of them) names.
func newEmbedStage(ctx context.Context, options config.Options, conn stream.Connection, loaded *loadedModel, vectors index.Index, erasures embedder.Erasures) (*embedStage, error) {
	embed, err := embedder.New(ctx, embedder.Options{Model: loaded.network, Version: loaded.version.ID, Index: vectors, Erasures: erasures})
	if err != nil {
		return nil, err
	}
	if _, err := vectors.Active(ctx); errors.Is(err, index.ErrNoActiveVersion) {
		if err := vectors.Activate(ctx, loaded.version.ID); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	consumerOptions := stream.ConsumerOptionsFrom(options.Stream, options.Stream.EmbedGroup)
	consumerOptions.BatchSize, consumerOptions.MaxWait = options.Embedder.BatchSize, options.Embedder.MaxWait
	consumerOptions.Prepare = embed.Prepare
	consumer, err := stream.NewConsumer(conn, consumerOptions, embed.Handle)
	if err != nil {
		return nil, err
	}
	return &embedStage{embedder: embed, consumer: consumer}, nil
}

// newArchiveStage makes the consumer that writes every crop into the crop store.
func newArchiveStage(options config.Options, conn stream.Connection, store archiver.Store) (*stream.Consumer, *archiver.Archiver, error) {
	archive := archiver.New(store)
	consumerOptions := stream.ConsumerOptionsFrom(options.Stream, options.Stream.ArchiveGroup)
	consumerOptions.BatchSize, consumerOptions.ValidateJPEG = 64, true
	consumer, err := stream.NewConsumer(conn, consumerOptions, archive.Handle)
	if err != nil {
		return nil, nil, err
	}
	return consumer, archive, nil
}
