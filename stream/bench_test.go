package stream

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
)

// benchRecords makes n records of 8 KiB images (the size of a 128x256 crop at quality 90) over
// four cameras; the image bytes are random so nothing compresses them away.
func benchRecords(b *testing.B, n int) []cropstore.CropRecord {
	image := make([]byte, 8<<10)
	if _, err := rand.Read(image); err != nil {
		b.Fatal(err)
	}
	image[0], image[1], image[len(image)-2], image[len(image)-1] = 0xFF, 0xD8, 0xFF, 0xD9
	cameras := []string{"cam-1", "cam-2", "cam-3", "cam-4"}
	records := make([]cropstore.CropRecord, n)
	for i := range records {
		records[i] = testRecord(b, cameras[i%len(cameras)], int64(i/len(cameras)), 0)
		records[i].JPEG = image
	}
	return records
}

// benchBroker starts an embedded broker in the benchmark's process, or uses REID_KAFKA_BROKERS
// (a real Kafka, or `reid broker` in its own process as scripts/bench_stream.sh does).
func benchBroker(b *testing.B) (Connection, string, string) {
	var conn Connection
	if brokers := os.Getenv("REID_KAFKA_BROKERS"); brokers != "" {
		conn = Connection{Brokers: strings.Split(brokers, ",")}
	} else {
		broker, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", DataDir: b.TempDir(), Logger: testLogger()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(broker.Close)
		conn = Connection{Brokers: broker.Addrs()}
	}
	topic := randomName("bench-crops")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, conn, Topic{Name: topic, Partitions: 4}, Topic{Name: topic + ".dlq", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	return conn, topic, topic + ".dlq"
}

func reportRate(b *testing.B, records int, elapsed time.Duration) {
	b.ReportMetric(float64(records)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(records)*(8<<10)/elapsed.Seconds()/1e6, "image-MB/s")
}

// BenchmarkProduce8KiB measures Put through acks=all to the embedded broker, Flush included, with
// the default buffer, batch and lane settings of reid's config.
func BenchmarkProduce8KiB(b *testing.B) { benchmarkProduce(b, 4) }

// BenchmarkProduceOneLane8KiB is the producer with one write in flight, as it was before lanes.
func BenchmarkProduceOneLane8KiB(b *testing.B) { benchmarkProduce(b, 1) }

func benchmarkProduce(b *testing.B, lanes int) {
	conn, topic, _ := benchBroker(b)
	records := benchRecords(b, b.N)
	producer, err := NewProducer(conn, ProducerOptions{Topic: topic, Buffer: 1024, BatchSize: 64, BatchTimeout: 50 * time.Millisecond, Lanes: lanes, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer producer.Close(context.Background())
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for _, record := range records {
		if err := producer.Put(ctx, record); err != nil {
			b.Fatal(err)
		}
	}
	if err := producer.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if stats := producer.Stats(); stats.Produced != int64(b.N) {
		b.Fatalf("produced %d of %d", stats.Produced, b.N)
	}
	reportRate(b, b.N, elapsed)
}

// BenchmarkConsume8KiB measures the batch consumer (decode, no-op handler, synchronous commit per
// batch of 32) reading records produced beforehand; group join is excluded from the timing by
// starting the clock at the first handled batch.
func BenchmarkConsume8KiB(b *testing.B) {
	conn, topic, dlq := benchBroker(b)
	records := benchRecords(b, b.N)
	producer, err := NewProducer(conn, ProducerOptions{Topic: topic, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, record := range records {
		if err := producer.Put(ctx, record); err != nil {
			b.Fatal(err)
		}
	}
	if err := producer.Close(ctx); err != nil {
		b.Fatal(err)
	}
	var first time.Time
	done := make(chan time.Time, 1)
	handled := 0
	consumer, err := NewConsumer(conn, ConsumerOptions{Topic: topic, Group: randomName("bench"), DLQTopic: dlq, BatchSize: 32, Logger: testLogger()},
		func(_ context.Context, batch []Message) error {
			if first.IsZero() {
				first = time.Now()
			}
			handled += len(batch)
			if handled == b.N {
				done <- time.Now()
			}
			return nil
		})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	b.ResetTimer()
	go func() { runDone <- consumer.Run(runCtx) }()
	var last time.Time
	select {
	case last = <-done:
	case <-time.After(5 * time.Minute):
		b.Fatal("consumer did not finish")
	}
	b.StopTimer()
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	// The first batch's records count as consumed at the first call; rate over the rest.
	if elapsed := last.Sub(first); elapsed > 0 && b.N > 32 {
		reportRate(b, b.N-32, elapsed)
	}
}
