package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/stream"
)

// newBrokerCommand runs only the embedded Kafka-protocol broker, in the foreground, so that other
// reid processes (an embedder under a crash test, say) and standard Kafka tools can use it.
func newBrokerCommand(g *globals) *cobra.Command {
	var addr string
	command := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded Kafka-protocol broker until SIGINT/SIGTERM",
		Long: "Runs the in-process Kafka-protocol broker that `reid run` embeds, on stream.embedded_addr " +
			"(default 127.0.0.1:9092), keeping its data under <data_dir>/broker, and creates the crops and DLQ topics.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("addr") {
				options.Stream.EmbeddedAddr = addr
			}
			broker, err := stream.StartBroker(stream.BrokerOptionsFrom(options.Stream, options.DataDir, slog.Default()))
			if err != nil {
				return err
			}
			defer broker.Close()
			ctx := cmd.Context()
			stopOps, err := startOps(ctx, options.Ops)
			if err != nil {
				return err
			}
			defer stopOps()
			setup, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			conn := stream.ConnectionFrom(options.Stream, broker.Addrs())
			if err := stream.EnsureTopics(setup, conn, stream.TopicsFrom(options.Stream)...); err != nil {
				return fmt.Errorf("broker: %w", err)
			}
			slog.Info("embedded Kafka broker ready", "addrs", broker.Addrs(), "data_dir", filepath.Join(options.DataDir, "broker"),
				"crops_topic", options.Stream.CropsTopic, "dlq_topic", options.Stream.DLQTopic)
			fmt.Fprintln(cmd.OutOrStdout(), broker.Addrs()[0])
			<-ctx.Done()
			slog.Info("embedded Kafka broker stopping")
			return nil
		},
	}
	command.Flags().StringVar(&addr, "addr", "", "listen address (default stream.embedded_addr, 127.0.0.1:9092; port 0 picks a free one)")
	return command
}
