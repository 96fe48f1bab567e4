package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/ingest"
	"github.com/reid-project/reid/internal/lease"
	"github.com/reid-project/reid/stream"
)

func newIngestCommand(g *globals) *cobra.Command {
	var (
		source    string
		camera    string
		model     string
		sampleFPS float64
		threads   int
		maxFrames int64
		asJSON    bool
	)
	command := &cobra.Command{
		Use:   "ingest",
		Short: "Detect, track and crop people from cameras into the crop store",
		Long: "Process one source (--source, --camera) or, without --source, every camera in the\n" +
			"configuration. Files and still-frame directories end; live sources run until interrupted.\n" +
			"SIGHUP re-reads the configuration and applies its cameras without a restart.\n" +
			"With ingest.failover_group, the processes of the group (on other machines, over the same\n" +
			"crop store) run the cameras in turn: one runs them, the others stand by and take over\n" +
			"when it stops or its machine is lost.\n" +
			"Crops go to <data_dir>/crops. A summary follows at the end (one JSON object with --json).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The configuration as the command line gives it; read again on each SIGHUP.
			load := func() (config.Options, error) {
				options, err := g.load(cmd)
				if err != nil {
					return options, err
				}
				flags := cmd.Flags()
				if flags.Changed("model") {
					options.Detector.Model = model
				}
				if flags.Changed("threads") {
					options.Detector.Threads = threads
				}
				if flags.Changed("sample-fps") {
					options.Ingest.SampleFPS = sampleFPS
				}
				if source != "" {
					options.Cameras = []config.Camera{{ID: camera, Source: source}}
				} else if flags.Changed("camera") {
					return options, errors.New("--camera needs --source (configured cameras carry their own ids)")
				}
				return options, options.Validate()
			}
			options, err := load()
			if err != nil {
				return err
			}
			if len(options.Cameras) == 0 {
				return errors.New("nothing to ingest: give --source and --camera, or configure cameras")
			}
			return runIngest(cmd.Context(), cmd.OutOrStdout(), options, maxFrames, asJSON, load)
		},
	}
	flags := command.Flags()
	flags.StringVar(&source, "source", "", "video file, rtsp/http URL, V4L device (/dev/video0 or 0) or directory of frames")
	flags.StringVar(&camera, "camera", "cam1", "camera id recorded with every crop of --source")
	flags.StringVar(&model, "model", "", "detector model: yolo-fastest or yolox-nano (overrides detector.model)")
	flags.Float64Var(&sampleFPS, "sample-fps", 0, "frames per second to process; 0 = every frame (overrides ingest.sample_fps)")
	flags.IntVar(&threads, "threads", 0, "OpenCV threads; 0 = OpenCV's default (overrides detector.threads)")
	flags.Int64Var(&maxFrames, "max-frames", 0, "stop each camera after this many processed frames; 0 = no limit")
	flags.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	return command
}

func runIngest(ctx context.Context, out io.Writer, options config.Options, maxFrames int64, asJSON bool, load func() (config.Options, error)) error {
	// With Kafka configured, ingest is the first stage of the distributed pipeline and produces to
	// the crops topic (the archiver keeps the crops); alone, it writes straight to the crop store.
	var sink ingest.Sink
	destination := ""
	var producer *stream.Producer
	var store cropStore
	metrics := &pipelineMetrics{dataDir: options.DataDir}
	if len(options.Stream.Brokers) > 0 {
		conn, closeStream, err := openStream(ctx, options, false)
		if err != nil {
			return err
		}
		defer closeStream()
		if producer, err = stream.NewProducer(conn, stream.ProducerOptionsFrom(options.Stream)); err != nil {
			return err
		}
		sink, destination = producer, "produced to topic "+options.Stream.CropsTopic
		// With the site's bucket, the record of erasures is shared: a track erased while in view
		// stops reaching the broker. A local store here would be this machine's, not the site's.
		if options.CropStore.Backend == "s3" {
			if store, err = openCropStore(ctx, options); err != nil {
				return err
			}
			sink = withoutErased{sink: producer, erasures: store}
		}
	} else {
		var err error
		if store, err = openCropStore(ctx, options); err != nil {
			return err
		}
		sink, destination = store, "crops stored under "+store.Location()
		defer startRetention(ctx, options, store, nil, metrics.pruned)()
	}
	ingester, err := newIngester(options, sink, maxFrames)
	if err != nil {
		return err
	}
	metrics.ingester, metrics.producer = ingester, producer
	stopOps, err := startOps(ctx, options.Ops, metrics)
	if err != nil {
		return err
	}
	defer stopOps()
	stopProgress := startProgress(ingester)
	var runErr error
	if group := options.Ingest.FailoverGroup; group != "" {
		runErr = runInFailoverGroup(ctx, options, store, ingester, load)
	} else {
		stopReloads := reloadCamerasOnHangup(ctx, ingester, options, load, nil)
		runErr = ingester.Run(ctx, options.Cameras)
		stopReloads()
	}
	stopProgress()
	if producer != nil {
		// Flush even after a signal: what ingest accepted must reach the broker.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := producer.Close(flushCtx); err != nil {
			runErr = errors.Join(runErr, err)
		}
		cancel()
	}
	stats := ingester.Stats()
	if asJSON {
		encoder := json.NewEncoder(out)
		if err := encoder.Encode(stats); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "frames %d  detections %d  crops %d  tracks %d  seconds %.1f  fps %.1f\n",
			stats.Frames, stats.Detections, stats.Crops, stats.Tracks, stats.Seconds, stats.FPS)
		if len(stats.Cameras) > 1 {
			for _, camera := range stats.Cameras {
				fmt.Fprintf(out, "  %-12s frames %d  late %d  detections %d  crops %d  tracks %d  fps %.1f  reconnects %d\n",
					camera.Camera, camera.Frames, camera.Late, camera.Detections, camera.Crops, camera.Tracks, camera.FPS, camera.Reconnects)
			}
		}
		fmt.Fprintln(out, destination)
	}
	return runErr
}

// startProgress redraws one status line on stderr twice a second, only when stderr is a terminal
// (a log file or pipe gets the summary alone). The returned func stops it and clears the line.
func startProgress(ingester *ingest.Ingester) func() {
	info, err := os.Stderr.Stat()
	if err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(500 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(os.Stderr, "\r\033[K")
				return
			case <-ticker.C:
				stats := ingester.Stats()
				fmt.Fprintf(os.Stderr, "\r\033[Kframes %d  fps %.1f  detections %d  crops %d  tracks %d",
					stats.Frames, stats.FPS, stats.Detections, stats.Crops, stats.Tracks)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// ingestFailoverTTL is how long the lease of an ingest failover group may go unrenewed before a
// standby process takes the cameras over.
const ingestFailoverTTL = 15 * time.Second

// ingestFailoverLease names a failover group's lease.
func ingestFailoverLease(group string) string { return "ingest-" + group + ".lease" }

// runInFailoverGroup runs the cameras while this process holds its failover group's lease
// (ingest.failover_group), and stands by while another does, until ctx ends. A process taking
// over reads the configuration again, so a standby runs the cameras the file names then; a
// SIGHUP changes the running cameras of the process that runs them, as without a group.
func runInFailoverGroup(ctx context.Context, options config.Options, store cropStore, ingester *ingest.Ingester, load func() (config.Options, error)) error {
	if store == nil {
		var err error
		if store, err = openCropStore(ctx, options); err != nil {
			return err
		}
	}
	leases, err := leaseStore(options, store)
	if err != nil {
		return err
	}
	checkCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = lease.CheckStore(checkCtx, leases)
	cancel()
	if err != nil {
		return fmt.Errorf("ingest: failover group %s: %w", options.Ingest.FailoverGroup, err)
	}
	host, _ := os.Hostname()
	held := lease.New(leases, ingestFailoverLease(options.Ingest.FailoverGroup), lease.NewHolder(),
		fmt.Sprintf("%s (pid %d)", host, os.Getpid()), ingestFailoverTTL, time.Now, slog.Default())
	slog.Info("ingest: in failover group; the process holding its lease runs the cameras", "group", options.Ingest.FailoverGroup, "leases", leases.Location())
	// One SIGHUP handler for the process's life: a standby has no cameras to change, and a hangup
	// without a handler would end it.
	var mu sync.Mutex
	var running atomic.Bool
	current := options
	stopReloads := onHangup(ctx, func(ctx context.Context) {
		loaded, err := load()
		if !running.Load() {
			if err != nil {
				slog.Error("reload: configuration not loaded", "err", err)
				return
			}
			slog.Info("reload: standing by in the failover group; the cameras are read again when this process takes over", "cameras", len(loaded.Cameras))
			return
		}
		mu.Lock()
		defer mu.Unlock()
		current = reloadCameras(ctx, ingester, current, loaded, err)
	})
	defer stopReloads()
	return held.Run(ctx, func(ctx context.Context) error {
		mu.Lock()
		if loaded, err := load(); err == nil && len(loaded.Cameras) > 0 {
			current = loaded
		}
		cameras := current.Cameras
		mu.Unlock()
		running.Store(true)
		defer running.Store(false)
		return ingester.Run(ctx, cameras)
	})
}
