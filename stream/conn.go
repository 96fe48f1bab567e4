package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/reid-project/reid/config"
)

// Connection says how to reach a Kafka cluster; producers, consumers and EnsureTopics share it.
type Connection struct {
	// Brokers are host:port bootstrap addresses; at least one.
	Brokers []string
	// SASLUser and SASLPassword enable SASL/PLAIN when SASLUser is set (use with TLS).
	SASLUser     string
	SASLPassword string
	// TLS dials the brokers over TLS with the system roots.
	TLS bool
}

// ConnectionFrom builds a Connection from the stream config. brokers overrides cfg.Brokers when
// non-empty (the embedded broker's addresses).
func ConnectionFrom(cfg config.Stream, brokers []string) Connection {
	if len(brokers) == 0 {
		brokers = cfg.Brokers
	}
	return Connection{Brokers: brokers, SASLUser: cfg.SASLUser, SASLPassword: cfg.SASLPassword, TLS: cfg.TLS}
}

func (c Connection) validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("stream: no brokers")
	}
	for _, broker := range c.Brokers {
		if _, _, err := net.SplitHostPort(broker); err != nil {
			return fmt.Errorf("stream: broker %q: %w", broker, err)
		}
	}
	return nil
}

func (c Connection) mechanism() sasl.Mechanism {
	if c.SASLUser == "" {
		return nil
	}
	return plain.Mechanism{Username: c.SASLUser, Password: c.SASLPassword}
}

func (c Connection) tlsConfig() *tls.Config {
	if !c.TLS {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// transport is for Writers and the admin Client.
func (c Connection) transport() *kafka.Transport {
	return &kafka.Transport{
		DialTimeout: 10 * time.Second,
		ClientID:    "reid",
		TLS:         c.tlsConfig(),
		SASL:        c.mechanism(),
	}
}

// dialer is for Readers, which kafka-go still configures with a Dialer.
func (c Connection) dialer() *kafka.Dialer {
	return &kafka.Dialer{
		Timeout:       10 * time.Second,
		DualStack:     true,
		ClientID:      "reid",
		TLS:           c.tlsConfig(),
		SASLMechanism: c.mechanism(),
	}
}

// Topic is one topic to create.
type Topic struct {
	Name       string
	Partitions int
	// ReplicationFactor <= 0 leaves it to the broker's default.replication.factor.
	ReplicationFactor int
	// Retention is the topic's retention.ms; 0 leaves it to the broker's log.retention.ms.
	Retention time.Duration
	// SegmentRoll is the topic's segment.ms; 0 leaves it to the broker's log.roll.ms.
	SegmentRoll time.Duration
}

// TopicsFrom lists the crops and DLQ topics the config names, with its partition count and
// retention. The DLQ gets one partition: it is small, and one partition keeps its records in
// arrival order.
func TopicsFrom(cfg config.Stream) []Topic {
	return []Topic{
		{Name: cfg.CropsTopic, Partitions: cfg.Partitions, Retention: cfg.TopicRetention, SegmentRoll: CropsSegmentRoll},
		{Name: cfg.DLQTopic, Partitions: 1, Retention: cfg.TopicRetention},
	}
}

// EnsureTopics creates the topics that do not exist yet; existing ones are left as they are (their
// partition count is not changed, which would break per-camera ordering). It retries while the
// brokers are still starting, until ctx ends.
func EnsureTopics(ctx context.Context, conn Connection, topics ...Topic) error {
	if err := conn.validate(); err != nil {
		return err
	}
	configs := make([]kafka.TopicConfig, 0, len(topics))
	for _, topic := range topics {
		if topic.Name == "" || topic.Partitions < 1 {
			return fmt.Errorf("stream: topic %q with %d partitions", topic.Name, topic.Partitions)
		}
		replication := topic.ReplicationFactor
		if replication <= 0 {
			replication = -1
		}
		config := kafka.TopicConfig{Topic: topic.Name, NumPartitions: topic.Partitions, ReplicationFactor: replication}
		if topic.Retention > 0 {
			config.ConfigEntries = append(config.ConfigEntries, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(topic.Retention.Milliseconds(), 10)})
		}
		if topic.SegmentRoll > 0 {
			config.ConfigEntries = append(config.ConfigEntries, kafka.ConfigEntry{ConfigName: "segment.ms", ConfigValue: strconv.FormatInt(topic.SegmentRoll.Milliseconds(), 10)})
		}
		configs = append(configs, config)
	}
	client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: conn.transport(), Timeout: 10 * time.Second}
	defer client.Transport.(*kafka.Transport).CloseIdleConnections()
	backoff := newBackoff(100*time.Millisecond, 2*time.Second)
	for {
		err := createTopics(ctx, client, configs)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stream: create topics: %w (last error: %v)", ctx.Err(), err)
		}
		var kafkaErr kafka.Error
		if errors.As(err, &kafkaErr) && !kafkaErr.Temporary() {
			return fmt.Errorf("stream: create topics: %w", err)
		}
		if err := backoff.wait(ctx); err != nil {
			return fmt.Errorf("stream: create topics: %w", err)
		}
	}
}

func createTopics(ctx context.Context, client *kafka.Client, configs []kafka.TopicConfig) error {
	response, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: configs})
	if err != nil {
		return err
	}
	var errs []error
	for topic, err := range response.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("topic %s: %w", topic, err))
		}
	}
	return errors.Join(errs...)
}

// backoff is a capped exponential delay for retry loops; not safe for concurrent use.
type backoff struct {
	initial, max, next time.Duration
}

func newBackoff(initial, max time.Duration) *backoff {
	return &backoff{initial: initial, max: max, next: initial}
}

// wait sleeps the next delay, or returns ctx's error if ctx ends first.
func (b *backoff) wait(ctx context.Context) error {
	timer := time.NewTimer(b.next)
	defer timer.Stop()
	b.next = min(2*b.next, b.max)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// TopicPartitions asks the brokers how many partitions each topic has (0: it does not exist). It
// creates nothing, so `reid check` can use it on a running site.
func TopicPartitions(ctx context.Context, conn Connection, topics ...string) (map[string]int, error) {
	if err := conn.validate(); err != nil {
		return nil, err
	}
	client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: conn.transport(), Timeout: 10 * time.Second}
	defer client.Transport.(*kafka.Transport).CloseIdleConnections()
	response, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("stream: metadata from %v: %w", conn.Brokers, err)
	}
	partitions := make(map[string]int, len(topics))
	for _, topic := range topics {
		partitions[topic] = 0
	}
	for _, topic := range response.Topics {
		if topic.Error == nil {
			partitions[topic.Name] = len(topic.Partitions)
		}
	}
	return partitions, nil
}
