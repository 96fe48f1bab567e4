package stream

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/reid-project/reid/config"
)

// Cluster is the Kafka cluster one reid process talks to: the configured brokers, or the embedded
// broker that Open started because none were configured.
type Cluster struct {
	// Conn reaches the brokers; pass it to NewProducer and NewConsumer.
	Conn Connection
	// Embedded is the broker Open started, nil when cfg.Brokers named external ones.
	Embedded *Broker
}

// Open connects to cfg.Brokers or, when there are none, starts the embedded broker on
// cfg.EmbeddedAddr with its data under <dataDir>/broker; then it creates the crops and DLQ topics
// if they are missing. Close stops the embedded broker, if any; close producers and consumers first.
func Open(ctx context.Context, cfg config.Stream, dataDir string, logger *slog.Logger) (*Cluster, error) {
	if logger == nil {
		logger = slog.Default()
	}
	cluster := &Cluster{}
	var brokers []string
	if len(cfg.Brokers) == 0 {
		broker, err := StartBroker(BrokerOptionsFrom(cfg, dataDir, logger))
		if err != nil {
			return nil, err
		}
		cluster.Embedded = broker
		brokers = broker.Addrs()
		logger.Info("embedded Kafka broker started", "addrs", brokers)
	}
	cluster.Conn = ConnectionFrom(cfg, brokers)
	if err := EnsureTopics(ctx, cluster.Conn, TopicsFrom(cfg)...); err != nil {
		cluster.Close()
		return nil, fmt.Errorf("stream: open: %w", err)
	}
	return cluster, nil
}

// BrokerOptionsFrom takes the embedded broker's settings from the stream config: its address, its
// data under <dataDir>/broker, and whether it fsyncs what it acknowledges.
func BrokerOptionsFrom(cfg config.Stream, dataDir string, logger *slog.Logger) BrokerOptions {
	return BrokerOptions{
		Addr:       cfg.EmbeddedAddr,
		DataDir:    filepath.Join(dataDir, "broker"),
		SyncWrites: cfg.EmbeddedSyncWrites,
		// A site producing a couple of crops a second fills this within the hour of purging after
		// an erasure (CropsSegmentRoll), so the file holding the erased crops goes then too.
		SegmentBytes: EmbeddedSegmentBytes,
		Logger:       logger,
	}
}

// EmbeddedSegmentBytes is the embedded broker's log segment size.
const EmbeddedSegmentBytes = 16 << 20

// Close stops the embedded broker, if Open started one.
func (c *Cluster) Close() {
	if c.Embedded != nil {
		c.Embedded.Close()
	}
}

// ConsumerOptionsFrom fills the topic, DLQ and group of a consumer from the stream config; group is
// cfg.EmbedGroup or cfg.ArchiveGroup. Batch size and wait come from the consumer's own stage.
func ConsumerOptionsFrom(cfg config.Stream, group string) ConsumerOptions {
	return ConsumerOptions{Topic: cfg.CropsTopic, Group: group, DLQTopic: cfg.DLQTopic}
}
