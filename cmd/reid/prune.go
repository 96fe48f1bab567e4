package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/retention"
	"github.com/reid-project/reid/stream"
)

// startRetention prunes what retention.max_age no longer allows, now and every
// retention.interval, from store and vectors (pass nil for one the process does not own), telling
// pruned (may be nil) what went. The returned function stops it and waits for it.
func startRetention(ctx context.Context, options config.Options, store retention.Store, vectors retention.Index, pruned func(retention.Result)) (stop func()) {
	policy := retentionPolicy(options.Retention)
	if policy.MaxAge <= 0 && len(policy.PerCamera) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	slog.Info("retention: keeping crops for", "max_age", policy.MaxAge, "per_camera", policy.PerCamera, "interval", options.Retention.Interval)
	go func() {
		defer close(done)
		retention.Run(ctx, store, vectors, retention.Options{Policy: policy, Interval: options.Retention.Interval, Pruned: pruned})
	}()
	return func() { cancel(); <-done }
}

// startBrokerPurge deletes from the broker, after each erasure in store's record, the crops
// topic's records that every consumer group has taken (retention.PurgeBroker), and serves its
// progress in metrics. The archiving processes run it: they hold both the broker and the crop
// store. The returned function stops it and waits for it.
func startBrokerPurge(ctx context.Context, options config.Options, conn stream.Connection, store retention.ErasureRecord, metrics *pipelineMetrics) (stop func()) {
	purger, err := stream.NewPurger(conn, options.Stream.CropsTopic)
	if err != nil {
		slog.Error("erasure: the broker cannot be purged after erasures", "err", err)
		return func() {}
	}
	metrics.purging.Store(true) // its gauge is served from the start, so an alert sees a 0 first
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer purger.Close()
		retention.PurgeBroker(ctx, store, purger, retention.PurgeOptions{Purged: metrics.purged})
	}()
	return func() { cancel(); <-done }
}

// retentionPolicy is the configured retention as retention applies it.
func retentionPolicy(settings config.Retention) retention.Policy {
	policy := retention.Policy{MaxAge: settings.MaxAge}
	for _, own := range settings.PerCamera {
		if policy.PerCamera == nil {
			policy.PerCamera = map[string]time.Duration{}
		}
		policy.PerCamera[own.Camera] = own.MaxAge
	}
	return policy
}

func newPruneCommand(g *globals) *cobra.Command {
	var olderThan time.Duration
	command := &cobra.Command{
		Use:   "prune [--older-than DURATION]",
		Short: "Delete the crops, and their vectors in every gallery, older than retention.max_age (or --older-than)",
		Long: `Prune applies the retention period once: vectors first (every model version's gallery), then
the crop store, so a lookup never returns a crop whose image is gone. reid run, archive and embed
do the same every retention.interval when retention.max_age is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			policy := retentionPolicy(options.Retention)
			if cmd.Flags().Changed("older-than") {
				policy.MaxAge = olderThan
			}
			if policy.MaxAge <= 0 && len(policy.PerCamera) == 0 {
				return fmt.Errorf("nothing to prune: set retention.max_age (or retention.per_camera) or --older-than to a positive duration")
			}
			ctx := cmd.Context()
			store, err := openCropStore(ctx, options)
			if err != nil {
				return err
			}
			vectors, err := openIndex(ctx, options)
			if err != nil {
				return err
			}
			defer vectors.Close()
			now := time.Now()
			result, err := policy.Prune(ctx, store, vectors, now)
			var what []string
			if policy.MaxAge > 0 {
				what = append(what, "every camera's from before "+now.Add(-policy.MaxAge).UTC().Format(time.RFC3339))
			}
			for _, camera := range slices.Sorted(maps.Keys(policy.PerCamera)) {
				what = append(what, camera+"'s from before "+now.Add(-policy.PerCamera[camera]).UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d crops and %d vectors: %s\n", result.Crops, result.Vectors, strings.Join(what, ", "))
			return err
		},
	}
	command.Flags().DurationVar(&olderThan, "older-than", 0, "delete what is older than this (default retention.max_age)")
	return command
}
