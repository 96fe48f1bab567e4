package stream

import (
	"context"
	"encoding/hex"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// librdkafkaScript consumes want records from a topic with librdkafka (python3-confluent-kafka, a
// Makefile dependency), prints "key magic" per record, then produces one record whose value is
// given in hex.
const librdkafkaScript = `
import sys
from confluent_kafka import Consumer, Producer
brokers, topic, want, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
consumer = Consumer({"bootstrap.servers": brokers, "group.id": "librdkafka-interop", "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
seen = 0
for _ in range(200):
    for message in consumer.consume(num_messages=100, timeout=0.2):
        if message.error() is None:
            print(message.key().decode(), message.value()[:5].hex())
            seen += 1
    if seen >= want:
        break
consumer.close()
producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
producer.produce(topic, value, key=b"cam-py")
if producer.flush(30):
    sys.exit("librdkafka: produce not acknowledged")
`

// TestLibrdkafkaInterop checks that a standard Kafka client (librdkafka) reads what the producer
// wrote to the embedded broker, and that what it writes reaches the consumer.
func TestLibrdkafkaInterop(t *testing.T) {
	t.Parallel()
	env := embeddedEnv(t)
	topic, dlq := newTopics(t, env, 2)
	records := makeRecords(t, []string{"cam-a", "cam-b"}, 5, 0)
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	putAll(t, producer, records)
	fromPython := testRecord(t, "cam-py", 99, 0)
	value, err := Encode(fromPython)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	output, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", librdkafkaScript,
		env.conn.Brokers[0], topic, strconv.Itoa(len(records)), hex.EncodeToString(value)).CombinedOutput()
	if err != nil {
		t.Fatalf("librdkafka client (python3-confluent-kafka; make deps installs it): %v\n%s", err, output)
	}
	lines := strings.Split(strings.TrimSpace(string(output)), "\n")
	if len(lines) != len(records) {
		t.Fatalf("librdkafka read %d records, want %d:\n%s", len(lines), len(records), output)
	}
	for _, line := range lines {
		key, magic, _ := strings.Cut(line, " ")
		if (key != "cam-a" && key != "cam-b") || magic != hex.EncodeToString([]byte("RCRD\x01")) {
			t.Fatalf("librdkafka saw key %q value prefix %s", key, magic)
		}
	}

	index := newMemoryIndex()
	startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: dlq}, index.handler)
	waitFor(t, 30*time.Second, "the record librdkafka produced", func() bool { return index.has(fromPython.ID) })
}
