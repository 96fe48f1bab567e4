package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/stream"
)

func newEmbedCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "embed",
		Short: "Consume the crops topic, embed each crop with the active model and upsert it into the index",
		Long: "Runs the embedder as its own process against stream.brokers (or the embedded broker of\n" +
			"`reid run` / `reid broker` at stream.embedded_addr). Offsets are committed only after the\n" +
			"vectors are durable in the index, so a killed embedder resumes without losing a crop.\n" +
			"Crops that cannot be decoded go to the dead-letter topic with the reason. Crops erased on\n" +
			"request are not indexed: the crop store (the site's bucket at scale) keeps that record.\n" +
			"A model version promoted while it runs is taken up within embedder.follow_interval: new\n" +
			"crops go into its gallery; then run `reid index backfill VERSION --activate`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, closeBroker, err := openStream(ctx, options, false)
			if err != nil {
				return err
			}
			defer closeBroker()
			vectors, err := openIndex(ctx, options)
			if err != nil {
				return err
			}
			defer vectors.Close()
			// The crop store keeps the record of erasures, whose crops must not be indexed again.
			store, err := openCropStore(ctx, options)
			if err != nil {
				return err
			}
			loaded, err := openModel(ctx, options, "")
			if err != nil {
				return err
			}
			stage, err := newEmbedStage(ctx, options, conn, loaded, vectors, store)
			if err != nil {
				loaded.Close()
				return err
			}
			// A promoted version is taken up at a batch boundary; its backfill and the move of
			// lookups are `reid index backfill VERSION --activate`'s (docs/OPERATIONS.md).
			models, err := newModelFollower(ctx, options, vectors, stage.embedder, loaded, false)
			if err != nil {
				loaded.Close()
				return err
			}
			defer models.close()
			defer models.start(ctx, nil, nil, nil)()
			metrics := &pipelineMetrics{embedder: stage.embedder, vectors: vectors, dataDir: options.DataDir,
				consumers: map[string]*stream.Consumer{options.Stream.EmbedGroup: stage.consumer}}
			defer startRetention(ctx, options, nil, vectors, metrics.pruned)()
			stopOps, err := startOps(ctx, options.Ops, metrics)
			if err != nil {
				return err
			}
			defer stopOps()
			slog.Info("embedder running", "topic", options.Stream.CropsTopic, "group", options.Stream.EmbedGroup, "model", loaded.version.ID,
				"follow_interval", options.Embedder.FollowInterval)
			err = stage.consumer.Run(ctx)
			stats := stage.consumer.Stats()
			fmt.Fprintf(cmd.OutOrStdout(), "embedded %d  dead-lettered %d  batches %d\n",
				stage.embedder.Stats().Embedded, stats.DeadLettered, stats.Batches)
			if errors.Is(err, ctx.Err()) {
				return nil
			}
			return err
		},
	}
}

func newArchiveCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "archive",
		Short: "Consume the crops topic in its own group and write every crop into the crop store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, closeBroker, err := openStream(ctx, options, false)
			if err != nil {
				return err
			}
			defer closeBroker()
			store, err := openCropStore(ctx, options)
			if err != nil {
				return err
			}
			consumer, archive, err := newArchiveStage(options, conn, store)
			if err != nil {
				return err
			}
			metrics := &pipelineMetrics{archive: archive, dataDir: options.DataDir, consumers: map[string]*stream.Consumer{options.Stream.ArchiveGroup: consumer}}
			defer startRetention(ctx, options, store, nil, metrics.pruned)()
			defer startBrokerPurge(ctx, options, conn, store, metrics)()
			stopOps, err := startOps(ctx, options.Ops, metrics)
			if err != nil {
				return err
			}
			defer stopOps()
			slog.Info("archiver running", "topic", options.Stream.CropsTopic, "group", options.Stream.ArchiveGroup, "store", store.Location())
			err = consumer.Run(ctx)
			fmt.Fprintf(cmd.OutOrStdout(), "archived %d  dead-lettered %d\n", archive.Archived(), consumer.Stats().DeadLettered)
			if errors.Is(err, ctx.Err()) {
				return nil
			}
			return err
		},
	}
}
