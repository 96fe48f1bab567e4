package main

import (
	"context"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/embedder"
	"github.com/reid-project/reid/stream"
)

// newIndexCommand inspects the configured vector index (embedded or Milvus).
func newIndexCommand(g *globals) *cobra.Command {
	command := &cobra.Command{Use: "index", Short: "Inspect the vector index (model-version galleries and their sizes) and backfill a gallery from the crop store"}
	command.AddCommand(&cobra.Command{
		Use:   "versions",
		Short: "List every model version's gallery: name, dimension, item count, which one is active",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ix, err := openIndex(cmd.Context(), options)
			if err != nil {
				return err
			}
			defer ix.Close()
			versions, err := ix.Versions(cmd.Context())
			if err != nil {
				return err
			}
			out := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(out, "VERSION\tDIM\tCOUNT\tACTIVE")
			for _, version := range versions {
				active := ""
				if version.Active {
					active = "yes"
				}
				fmt.Fprintf(out, "%s\t%d\t%d\t%s\n", version.Name, version.Dim, version.Count, active)
			}
			return out.Flush()
		},
	})
	command.AddCommand(&cobra.Command{
		Use:   "count [version]",
		Short: "Print the number of items in a version's gallery (default: the active one)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ix, err := openIndex(cmd.Context(), options)
			if err != nil {
				return err
			}
			defer ix.Close()
			version := ""
			if len(args) == 1 {
				version = args[0]
			}
			count, err := ix.Count(cmd.Context(), version)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), count)
			return err
		},
	})
	command.AddCommand(newIndexBackfillCommand(g))
	return command
}

func newIndexBackfillCommand(g *globals) *cobra.Command {
	var activate bool
	command := &cobra.Command{
		Use:   "backfill [VERSION] [--activate]",
		Short: "Embed every stored crop that a model version's gallery lacks (default: the active model), then optionally switch lookups to it",
		Long: `Backfill reads the crop store (which keeps every crop, unlike the crops topic) and embeds each
crop the version's gallery does not hold yet, so that a new model version can be searched over
the whole history. It resumes where a stopped run left off and may run while the pipeline
writes new crops into the same gallery (with Milvus; the embedded index is opened by one process
at a time, and reid run backfills on its own after a model switch).

With a Kafka cluster (stream.brokers) it first waits for the archiver to store every crop already
in the crops topic, so that crops embedded into another gallery just before the embedders moved
to this version are in the crop store when it is read.

--activate then makes the version the one lookups read; a running reid serve moves to it (with
its model) within lookup.follow_interval.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			version := ""
			if len(args) == 1 {
				version = args[0]
			}
			store, err := openCropStore(ctx, options)
			if err != nil {
				return err
			}
			vectors, err := openIndex(ctx, options)
			if err != nil {
				return err
			}
			defer vectors.Close()
			loaded, err := openModel(ctx, options, version)
			if err != nil {
				return err
			}
			defer loaded.Close()
			embed, err := embedder.New(ctx, embedder.Options{Model: loaded.network, Version: loaded.version.ID, Index: vectors, Erasures: store})
			if err != nil {
				return err
			}
			if err := waitForClusterArchiver(ctx, options); err != nil {
				return err
			}
			stats, err := backfillGallery(ctx, embed, store, vectors, loaded.version.ID, 1, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d stored crops, %d already in the gallery, %d embedded, %d undecodable, %d gone  %.1fs\n",
				loaded.version.ID, stats.Seen, stats.Present, stats.Embedded, stats.Rejected, stats.Missing, stats.Elapsed.Seconds())
			if activate {
				if err := vectors.Activate(ctx, loaded.version.ID); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is the active gallery\n", loaded.version.ID)
			}
			return nil
		},
	}
	command.Flags().BoolVar(&activate, "activate", false, "make the version's gallery the one lookups read once it is complete")
	return command
}

// waitForClusterArchiver waits, with a Kafka cluster configured (stream.brokers), for the
// archiver's group to store every crop already in the topic: crops an embedder put into another
// gallery just before it moved to the promoted version reach this one only through the crop
// store. On one machine the archiver is reid run's, which backfills on its own.
func waitForClusterArchiver(ctx context.Context, options config.Options) error {
	if len(options.Stream.Brokers) == 0 {
		return nil
	}
	conn, closeBroker, err := openStream(ctx, options, false)
	if err != nil {
		return err
	}
	defer closeBroker()
	archive, err := stream.NewGroupProgress(conn, options.Stream.CropsTopic, options.Stream.ArchiveGroup)
	if err != nil {
		return err
	}
	slog.Info("backfill: waiting for the archiver to store the crops already in the topic", "group", options.Stream.ArchiveGroup)
	return waitForArchiver(ctx, archive)
}

// backfillGallery embeds the stored crops version's gallery lacks, logging progress every 10 s and
// passing it to progress (may be nil) after every batch.
func backfillGallery(ctx context.Context, embed *embedder.Embedder, store embedder.Store, vectors embedder.Gallery, version string,
	share float64, progress func(embedder.BackfillStats)) (embedder.BackfillStats, error) {
	slog.Info("backfill: embedding the stored crops the gallery lacks", "version", version)
	lastLog := time.Now()
	stats, err := embed.Backfill(ctx, store, vectors, embedder.BackfillOptions{Share: share, Progress: func(stats embedder.BackfillStats) {
		if progress != nil {
			progress(stats)
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			slog.Info("backfill", "version", version, "seen", stats.Seen, "embedded", stats.Embedded, "present", stats.Present)
		}
	}})
	if err != nil {
		return stats, err
	}
	slog.Info("backfill done", "version", version, "seen", stats.Seen, "embedded", stats.Embedded, "present", stats.Present,
		"rejected", stats.Rejected, "missing", stats.Missing, "seconds", stats.Elapsed.Seconds())
	return stats, nil
}
