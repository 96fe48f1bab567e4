package stream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/config"
)

// HeaderReplayedFrom marks a record that Replay wrote back from the DLQ: "<dlq topic>/<partition>/<offset>"
// of the dead letter it came from. If the record fails again, its new dead letter keeps this
// header, so an operator can tell a record that failed after a replay from a fresh one.
const HeaderReplayedFrom = "reid.replayed.from"

// ReadDeadLetters reads the DLQ topic from its oldest record up to the end each partition had
// when the call began, in offset order per partition and partitions in order, and gives each
// record to visit with ParseDeadLetter's result: a record without the DLQ headers (written by
// something else) comes with its parse error and the letter's DLQ position only. Records that
// arrive meanwhile are left for the next read. An error from visit stops the read and is returned.
func ReadDeadLetters(ctx context.Context, conn Connection, topic string, visit func(DeadLetter, error) error) error {
	if err := conn.validate(); err != nil {
		return err
	}
	client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: conn.transport(), Timeout: 10 * time.Second}
	ranges, err := partitionRanges(ctx, client, topic)
	if err != nil {
		return fmt.Errorf("stream: read dead letters: %w", err)
	}
	for _, span := range ranges {
		if span.first >= span.last {
			continue
		}
		if err := readPartition(ctx, conn, topic, span, visit); err != nil {
			return err
		}
	}
	return nil
}

func readPartition(ctx context.Context, conn Connection, topic string, span partitionRange, visit func(DeadLetter, error) error) error {
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: conn.Brokers, Topic: topic, Partition: span.partition, Dialer: conn.dialer(),
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 500 * time.Millisecond,
	})
	defer reader.Close()
	if err := reader.SetOffset(span.first); err != nil {
		return fmt.Errorf("stream: read dead letters: partition %d: %w", span.partition, err)
	}
	for {
		message, err := reader.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("stream: read dead letters: partition %d: %w", span.partition, err)
		}
		if message.Offset >= span.last {
			return nil
		}
		letter, parseErr := ParseDeadLetter(message)
		if parseErr != nil {
			letter = DeadLetter{Key: message.Key, Value: message.Value, Partition: -1, Offset: -1}
		}
		letter.DLQTopic, letter.DLQPartition, letter.DLQOffset = topic, message.Partition, message.Offset
		if err := visit(letter, parseErr); err != nil {
			return err
		}
		if message.Offset >= span.last-1 {
			return nil
		}
	}
}

// Replay writes dead letters back to the topics they were read from, with their original key,
// value and headers plus HeaderReplayedFrom, and returns once all are acknowledged; every consumer
// group of that topic then reads them again. Consumers write idempotently by crop id, so a group
// that had handled a record before only repeats the work. Letters without a source topic are
// refused before anything is written.
func Replay(ctx context.Context, conn Connection, letters []DeadLetter) error {
	if err := conn.validate(); err != nil {
		return err
	}
	messages := make([]kafka.Message, 0, len(letters))
	for _, letter := range letters {
		if letter.Topic == "" {
			return fmt.Errorf("stream: replay: the dead letter at %s/%d/%d names no source topic", letter.DLQTopic, letter.DLQPartition, letter.DLQOffset)
		}
		headers := append([]kafka.Header(nil), letter.Headers...)
		headers = append(headers, kafka.Header{Key: HeaderReplayedFrom,
			Value: []byte(letter.DLQTopic + "/" + strconv.Itoa(letter.DLQPartition) + "/" + strconv.FormatInt(letter.DLQOffset, 10))})
		messages = append(messages, kafka.Message{Topic: letter.Topic, Key: letter.Key, Value: letter.Value, Headers: headers})
	}
	if len(messages) == 0 {
		return nil
	}
	writer := &kafka.Writer{
		Addr: kafka.TCP(conn.Brokers...),
		// The producer's partitioner: a camera's replayed crops join its partition.
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchBytes:   MaxRecordBytes + 64<<10,
		Transport:    conn.transport(),
	}
	defer writer.Close()
	const chunk = 100 // bounded writes, so one slow acknowledgement does not hold them all
	for start := 0; start < len(messages); start += chunk {
		if err := writer.WriteMessages(ctx, messages[start:min(start+chunk, len(messages))]...); err != nil {
			return fmt.Errorf("stream: replay: %d of %d written: %w", start, len(messages), err)
		}
	}
	return nil
}

// partitionRange is a partition's oldest offset and the offset its next record will get.
type partitionRange struct {
	partition   int
	first, last int64
}

// partitionRanges lists topic's partitions, in order, with their offsets.
func partitionRanges(ctx context.Context, client *kafka.Client, topic string) ([]partitionRange, error) {
	metadata, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	var partitions []int
	for _, found := range metadata.Topics {
		if found.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", found.Name, found.Error)
		}
		for _, partition := range found.Partitions {
			partitions = append(partitions, partition.ID)
		}
	}
	requests := make([]kafka.OffsetRequest, 0, 2*len(partitions))
	for _, partition := range partitions {
		requests = append(requests, kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition))
	}
	listed, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: requests}})
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	byPartition := map[int]partitionRange{}
	for _, offsets := range listed.Topics[topic] {
		if offsets.Error != nil {
			return nil, fmt.Errorf("partition %d offsets: %w", offsets.Partition, offsets.Error)
		}
		byPartition[offsets.Partition] = partitionRange{partition: offsets.Partition, first: offsets.FirstOffset, last: offsets.LastOffset}
	}
	slices.Sort(partitions)
	ranges := make([]partitionRange, 0, len(partitions))
	for _, partition := range partitions {
		span, ok := byPartition[partition]
		if !ok {
			return nil, fmt.Errorf("no offsets for partition %d", partition)
		}
		ranges = append(ranges, span)
	}
	return ranges, nil
}

// Attach reaches the cluster as Open does, except that with no brokers configured it first looks
// for a broker already listening on cfg.EmbeddedAddr (a running `reid run` or `reid broker`) and
// uses it; only when nothing answers there does it start the embedded broker on the data dir.
// Tools that work beside a running pipeline (the DLQ commands) use it; Close stops only a broker
// it started.
func Attach(ctx context.Context, cfg config.Stream, dataDir string, logger *slog.Logger) (*Cluster, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if len(cfg.Brokers) == 0 {
		dialer := net.Dialer{Timeout: time.Second}
		if connection, err := dialer.DialContext(ctx, "tcp", cfg.EmbeddedAddr); err == nil {
			connection.Close()
			logger.Info("using the broker already running", "addr", cfg.EmbeddedAddr)
			return &Cluster{Conn: ConnectionFrom(cfg, []string{cfg.EmbeddedAddr})}, nil
		}
	}
	return Open(ctx, cfg, dataDir, logger)
}
