package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/cropstore"
)

// testLogger discards logs unless REID_TEST_LOG=1, because client warnings during deliberate
// broker outages are expected noise.
func testLogger() *slog.Logger {
	if os.Getenv("REID_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testEnv is where a suite case runs: the embedded broker, or a real Kafka (broker is nil).
type testEnv struct {
	conn   Connection
	broker *Broker
}

func embeddedEnv(t *testing.T) testEnv {
	t.Helper()
	broker, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	return testEnv{conn: Connection{Brokers: broker.Addrs()}, broker: broker}
}

func realKafkaEnv(t *testing.T) testEnv {
	t.Helper()
	brokers := os.Getenv("REID_KAFKA_BROKERS")
	if brokers == "" {
		t.Skip("REID_KAFKA_BROKERS is not set; this is the real-Kafka variant of the stream suite (the embedded variant always runs)")
	}
	return testEnv{conn: Connection{Brokers: strings.Split(brokers, ",")}}
}

func randomName(prefix string) string {
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		panic(err)
	}
	return prefix + "-" + hex.EncodeToString(suffix[:])
}

// newTopics creates a random crops topic with partitions and its DLQ.
func newTopics(t *testing.T, env testEnv, partitions int) (topic, dlq string) {
	t.Helper()
	topic = randomName("reid-test-crops")
	dlq = topic + ".dlq"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, env.conn, Topic{Name: topic, Partitions: partitions}, Topic{Name: dlq, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	return topic, dlq
}

func newTestProducer(t *testing.T, conn Connection, options ProducerOptions) *Producer {
	t.Helper()
	if options.Logger == nil {
		options.Logger = testLogger()
	}
	producer, err := NewProducer(conn, options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		producer.Close(ctx)
	})
	return producer
}

// runningConsumer is a Consumer.Run in a goroutine that the test stops.
type runningConsumer struct {
	*Consumer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop ends Run and returns its error.
func (r *runningConsumer) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

func startConsumer(t *testing.T, conn Connection, options ConsumerOptions, handler Handler) *runningConsumer {
	t.Helper()
	if options.Logger == nil {
		options.Logger = testLogger()
	}
	if options.RetryBackoffMax == 0 {
		options.RetryBackoffMax = 500 * time.Millisecond
	}
	consumer, err := NewConsumer(conn, options, handler)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	running := &runningConsumer{Consumer: consumer, cancel: cancel, done: make(chan error, 1)}
	go func() { running.done <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		if err := running.stop(); err != nil {
			t.Errorf("consumer Run: %v", err)
		}
	})
	return running
}

// waitFor polls condition until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memoryIndex is an idempotent store keyed by crop id, like the real index: writing an id twice
// keeps one entry. It also remembers every delivery for redelivery checks.
type memoryIndex struct {
	mu         sync.Mutex
	records    map[string]cropstore.CropRecord
	deliveries map[string]int
	order      map[string][]int64 // frames per camera in arrival order
	partitions map[string]map[int]bool
}

func newMemoryIndex() *memoryIndex {
	return &memoryIndex{
		records:    map[string]cropstore.CropRecord{},
		deliveries: map[string]int{},
		order:      map[string][]int64{},
		partitions: map[string]map[int]bool{},
	}
}

func (m *memoryIndex) write(batch []Message) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, message := range batch {
		record := message.Record
		record.JPEG = append([]byte(nil), record.JPEG...) // the batch's bytes are not ours to keep
		m.records[record.ID] = record
		m.deliveries[record.ID]++
		m.order[record.Camera] = append(m.order[record.Camera], record.Frame)
		if m.partitions[record.Camera] == nil {
			m.partitions[record.Camera] = map[int]bool{}
		}
		m.partitions[record.Camera][message.Partition] = true
	}
}

func (m *memoryIndex) handler(_ context.Context, batch []Message) error {
	m.write(batch)
	return nil
}

func (m *memoryIndex) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

func (m *memoryIndex) has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.records[id]
	return ok
}

// putAll produces records and flushes, failing the test on any error.
func putAll(t *testing.T, producer *Producer, records []cropstore.CropRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, record := range records {
		if err := producer.Put(ctx, record); err != nil {
			t.Fatal(err)
		}
	}
	if err := producer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// makeRecords makes perCamera records for each camera, frames counting up from firstFrame.
func makeRecords(t testing.TB, cameras []string, perCamera int, firstFrame int64) []cropstore.CropRecord {
	image := testJPEG(t, 16, 32)
	var records []cropstore.CropRecord
	for i := range perCamera {
		for _, camera := range cameras {
			record := testRecord(t, camera, firstFrame+int64(i), 0)
			record.JPEG = image
			records = append(records, record)
		}
	}
	return records
}

// freeLoopbackAddr returns a loopback address nothing listens on (for broker-down tests).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	return addr
}

// readAll reads every message of one partition of topic up to its current end, without a group.
func readAll(t *testing.T, conn Connection, topic string, want int) []kafka.Message {
	t.Helper()
	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: conn.Brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer reader.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var messages []kafka.Message
	for len(messages) < want {
		message, err := reader.ReadMessage(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("read %d of %d messages from %s", len(messages), want, topic)
			}
			t.Fatal(err)
		}
		messages = append(messages, message)
	}
	return messages
}
