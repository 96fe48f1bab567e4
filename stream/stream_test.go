package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
)

// suite runs against the embedded broker (TestStreamEmbedded) and, when REID_KAFKA_BROKERS is set,
// against a real Kafka (TestStreamRealKafka).
var suite = []struct {
	name string
	run  func(t *testing.T, env testEnv)
}{
	{"RoundTrip", testRoundTrip},
	{"KeyedOrderPerCamera", testKeyedOrder},
	{"RedeliveryAfterCrashBeforeCommit", testRedeliveryAfterCrash},
	{"HandlerFailureRetriesSameBatch", testHandlerRetry},
	{"PoisonRecordsToDLQ", testDeadLetters},
	{"SlowConsumerLosesNothing", testSlowConsumer},
	{"EnsureTopicsIdempotent", testEnsureTopics},
	{"LargestRecordFitsTheBroker", testLargestRecord},
	{"TwoConsumersShareAGroup", testTwoConsumersShareAGroup},
	{"PrepareRunsAheadOfTheHandler", testPrepareAhead},
}

func TestStreamEmbedded(t *testing.T) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, embeddedEnv(t))
		})
	}
}

func TestStreamRealKafka(t *testing.T) {
	env := realKafkaEnv(t)
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, env)
		})
	}
}

func testRoundTrip(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 4)
	records := makeRecords(t, []string{"cam-a", "cam-b", "cam-c"}, 60, 0)
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic, BatchSize: 16})
	putAll(t, producer, records)
	if stats := producer.Stats(); stats.Produced != int64(len(records)) || stats.Buffered != 0 || stats.Dropped != 0 {
		t.Fatalf("producer stats %+v, want %d produced, none buffered or dropped", stats, len(records))
	}

	index := newMemoryIndex()
	options := ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: dlq, BatchSize: 25}
	// The group's lag counts every record before it commits anything, and none once all are done.
	observer, err := NewConsumer(env.conn, options, index.handler)
	if err != nil {
		t.Fatal(err)
	}
	if lag, err := observer.Lag(context.Background()); err != nil || lag != int64(len(records)) {
		t.Fatalf("lag before consuming = %d, %v; want %d", lag, err, len(records))
	}
	// The end marks stand for every record written; the group has passed them once it is done.
	progress := observer.Progress()
	marks, err := progress.EndMarks(context.Background())
	var marked int64
	for _, mark := range marks {
		marked += mark
	}
	if err != nil || len(marks) != 4 || marked != int64(len(records)) {
		t.Fatalf("end marks %v (%v): want 4 partitions marking %d records", marks, err, len(records))
	}
	if passed, err := progress.Passed(context.Background(), marks); err != nil || passed {
		t.Fatalf("passed the end marks before consuming: %v, %v", passed, err)
	}
	consumer := startConsumer(t, env.conn, options, index.handler)
	waitFor(t, 30*time.Second, "every record consumed", func() bool { return index.len() == len(records) })
	waitFor(t, 10*time.Second, "lag 0", func() bool {
		lag, err := observer.Lag(context.Background())
		return err == nil && lag == 0
	})
	if passed, err := progress.Passed(context.Background(), marks); err != nil || !passed {
		t.Fatalf("not past the end marks once every record is committed: %v, %v", passed, err)
	}
	// Another process sees the same from the broker; a group that never consumed has passed nothing.
	for group, want := range map[string]bool{options.Group: true, randomName("idle"): false} {
		elsewhere, err := NewGroupProgress(env.conn, topic, group)
		if err != nil {
			t.Fatal(err)
		}
		if passed, err := elsewhere.Passed(context.Background(), marks); err != nil || passed != want {
			t.Errorf("group %s passed the end marks: %v (%v), want %v", group, passed, err, want)
		}
	}
	if _, err := NewGroupProgress(env.conn, topic, ""); err == nil {
		t.Error("group progress without a group was accepted")
	}
	for _, record := range records {
		index.mu.Lock()
		got := index.records[record.ID]
		index.mu.Unlock()
		if !sameRecord(record, got) {
			t.Fatalf("record %s arrived as %+v", record.ID, got)
		}
	}
	waitFor(t, 10*time.Second, "handled count", func() bool { return consumer.Stats().Handled == int64(len(records)) })
	if stats := consumer.Stats(); stats.DeadLettered != 0 || stats.HandlerErrors != 0 {
		t.Fatalf("consumer stats %+v, want no dead letters or handler errors", stats)
	}
}

func testKeyedOrder(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 4)
	cameras := []string{"cam-1", "cam-2", "cam-3", "cam-4", "cam-5"}
	const perCamera = 80
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic, BatchSize: 7, BatchTimeout: 2 * time.Millisecond})
	// Each camera's frames come from its own goroutine, as in ingest.
	var wg sync.WaitGroup
	for _, camera := range cameras {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for frame := range int64(perCamera) {
				if err := producer.Put(context.Background(), testRecord(t, camera, frame, 0)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := producer.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	index := newMemoryIndex()
	startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: dlq, BatchSize: 13}, index.handler)
	waitFor(t, 30*time.Second, "every record consumed", func() bool { return index.len() == len(cameras)*perCamera })
	index.mu.Lock()
	defer index.mu.Unlock()
	for _, camera := range cameras {
		frames := index.order[camera]
		if !slices.IsSorted(frames) || len(frames) != perCamera {
			t.Errorf("camera %s frames arrived as %v, want 0..%d in order", camera, frames, perCamera-1)
		}
		if len(index.partitions[camera]) != 1 {
			t.Errorf("camera %s spread over partitions %v, want one", camera, index.partitions[camera])
		}
	}
}

func testRedeliveryAfterCrash(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 3)
	records := makeRecords(t, []string{"cam-a", "cam-b"}, 100, 0)
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	putAll(t, producer, records)

	group := randomName("group")
	index := newMemoryIndex()
	var (
		mu         sync.Mutex
		calls      int
		committed  []string // ids of batches whose handler returned nil
		crashBatch []string // ids written but never acknowledged
	)
	crashed := make(chan struct{})
	// The first consumer writes every batch, but on its 4th batch it "dies" after the write and
	// before returning, so that batch is never committed.
	first := startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: group, DLQTopic: dlq, BatchSize: 10, DrainTimeout: 100 * time.Millisecond},
		func(ctx context.Context, batch []Message) error {
			index.write(batch)
			mu.Lock()
			calls++
			call := calls
			for _, message := range batch {
				if call < 4 {
					committed = append(committed, message.Record.ID)
				} else if call == 4 {
					crashBatch = append(crashBatch, message.Record.ID)
				}
			}
			mu.Unlock()
			if call >= 4 {
				if call == 4 {
					close(crashed)
				}
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("first consumer never reached its 4th batch")
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	second := newMemoryIndex()
	startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: group, DLQTopic: dlq, BatchSize: 10},
		func(ctx context.Context, batch []Message) error {
			second.write(batch)
			index.write(batch)
			return nil
		})
	waitFor(t, 30*time.Second, "every record in the index", func() bool { return index.len() == len(records) })
	mu.Lock()
	defer mu.Unlock()
	for _, id := range crashBatch {
		if !second.has(id) {
			t.Errorf("record %s was written but not committed by the crashed consumer, and was not delivered again", id)
		}
	}
	for _, id := range committed {
		if second.has(id) {
			t.Errorf("record %s was committed by the first consumer but delivered again", id)
		}
	}
	for _, record := range records {
		if !index.has(record.ID) {
			t.Errorf("record %s lost", record.ID)
		}
	}
	if len(crashBatch) == 0 || len(committed) == 0 {
		t.Fatalf("crash batch %d records, committed %d: the scenario did not happen", len(crashBatch), len(committed))
	}
}

func testHandlerRetry(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 2)
	records := makeRecords(t, []string{"cam-a", "cam-b"}, 50, 0)
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	putAll(t, producer, records)

	index := newMemoryIndex()
	var failures atomic.Int64
	var firstFailed []string
	consumer := startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: dlq, BatchSize: 20, RetryBackoffMin: 10 * time.Millisecond},
		func(ctx context.Context, batch []Message) error {
			// The index is "down" for the first three calls.
			if failures.Load() < 3 {
				if failures.Add(1) == 1 {
					for _, message := range batch {
						firstFailed = append(firstFailed, message.Record.ID)
					}
				}
				return errors.New("index unavailable")
			}
			index.write(batch)
			return nil
		})
	waitFor(t, 30*time.Second, "every record consumed", func() bool { return index.len() == len(records) })
	if got := consumer.Stats().HandlerErrors; got != 3 {
		t.Errorf("HandlerErrors = %d, want 3", got)
	}
	for _, id := range firstFailed {
		if !index.has(id) {
			t.Errorf("record %s of the failed batch was skipped", id)
		}
	}
}

func testDeadLetters(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 1)
	good := func(frame int64) cropstore.CropRecord { return testRecord(t, "cam-1", frame, 0) }
	encode := func(record cropstore.CropRecord) []byte {
		value, err := Encode(record)
		if err != nil {
			t.Fatal(err)
		}
		return value
	}
	truncated := encode(good(2))
	truncated = truncated[:len(truncated)-100]
	unknownVersion := encode(good(3))
	unknownVersion[4] = 9
	brokenImage := good(4)
	brokenImage.JPEG = brokenImage.JPEG[:len(brokenImage.JPEG)/2]
	refused := good(5)
	refused.Detector = "refuse-me"
	// Offsets in the single partition follow this order.
	values := []struct {
		value  []byte
		reason string // empty: a good record
	}{
		{encode(good(0)), ""},
		{[]byte("\x00\x01garbage bytes from somewhere else"), "not-crop-record"},
		{encode(good(1)), ""},
		{truncated, "truncated"},
		{unknownVersion, "unknown-version"},
		{encode(brokenImage), "bad-jpeg"},
		{encode(refused), "rejected"},
		{encode(good(6)), ""},
	}
	writer := &kafka.Writer{Addr: kafka.TCP(env.conn.Brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer writer.Close()
	for _, v := range values { // one by one, so the offsets are known
		if err := writer.WriteMessages(context.Background(), kafka.Message{Key: []byte("cam-1"), Value: v.value}); err != nil {
			t.Fatal(err)
		}
	}

	index := newMemoryIndex()
	group := randomName("group")
	var fixed atomic.Bool // the handler's bug is fixed: it refuses nothing any more
	consumer := startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: group, DLQTopic: dlq, BatchSize: 3, ValidateJPEG: true},
		func(ctx context.Context, batch []Message) error {
			rejected := map[int]error{}
			var accepted []Message
			for i, message := range batch {
				if message.Record.Detector == "refuse-me" && !fixed.Load() {
					rejected[i] = errors.New("refused by the handler")
					continue
				}
				accepted = append(accepted, message)
			}
			index.write(accepted)
			if len(rejected) > 0 {
				return &RejectedError{Records: rejected}
			}
			return nil
		})
	waitFor(t, 30*time.Second, "good records and dead letters", func() bool {
		return index.len() == 3 && consumer.Stats().DeadLettered == 5
	})
	for _, frame := range []int64{0, 1, 6} {
		if id := good(frame).ID; !index.has(id) {
			t.Errorf("good record %s (frame %d) not handled: poison records stalled the consumer", id, frame)
		}
	}

	letters := readAll(t, env.conn, dlq, 5)
	for _, message := range letters {
		letter, err := ParseDeadLetter(message)
		if err != nil {
			t.Fatal(err)
		}
		if letter.Offset < 0 || int(letter.Offset) >= len(values) {
			t.Fatalf("dead letter %+v has offset outside the topic", letter)
		}
		original := values[letter.Offset]
		if letter.Reason != original.reason {
			t.Errorf("offset %d: reason %q, want %q (error %q)", letter.Offset, letter.Reason, original.reason, letter.Error)
		}
		if letter.Topic != topic || letter.Partition != 0 || letter.Group != group || letter.Error == "" || time.Since(letter.Time) > time.Minute {
			t.Errorf("offset %d: dead letter headers %+v", letter.Offset, letter)
		}
		if !bytes.Equal(letter.Value, original.value) || string(letter.Key) != "cam-1" {
			t.Errorf("offset %d: dead letter does not carry the original bytes and key", letter.Offset)
		}
	}
	testReplayDeadLetters(t, env, topic, dlq, len(values), &fixed, consumer, func(frame int64) bool { return index.has(good(frame).ID) })
}

// testReplayDeadLetters continues testDeadLetters: it reads the DLQ back, then replays the record
// the handler had refused (now that it accepts it) and one that still cannot be decoded.
func testReplayDeadLetters(t *testing.T, env testEnv, topic, dlq string, written int, fixed *atomic.Bool, consumer *runningConsumer, handled func(frame int64) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Something else writes to the DLQ too: it is read with its parse error, not skipped.
	foreign := &kafka.Writer{Addr: kafka.TCP(env.conn.Brokers...), Topic: dlq, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer foreign.Close()
	if err := foreign.WriteMessages(ctx, kafka.Message{Value: []byte("not a dead letter")}); err != nil {
		t.Fatal(err)
	}
	read := func() (letters []DeadLetter, unparsed int) {
		t.Helper()
		err := ReadDeadLetters(ctx, env.conn, dlq, func(letter DeadLetter, parseErr error) error {
			if parseErr != nil {
				unparsed++
				return nil
			}
			letters = append(letters, letter)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return letters, unparsed
	}
	letters, unparsed := read()
	if len(letters) != 5 || unparsed != 1 {
		t.Fatalf("read %d dead letters and %d others, want 5 and 1", len(letters), unparsed)
	}
	var replay []DeadLetter
	for i, letter := range letters {
		if letter.DLQTopic != dlq || letter.DLQPartition != 0 || letter.DLQOffset != int64(i) || len(letter.Headers) != 0 {
			t.Errorf("dead letter %d: DLQ position %s/%d/%d, headers %v", i, letter.DLQTopic, letter.DLQPartition, letter.DLQOffset, letter.Headers)
		}
		if letter.Reason == "rejected" || letter.Reason == "unknown-version" {
			replay = append(replay, letter)
		}
	}
	if len(replay) != 2 {
		t.Fatalf("%d dead letters to replay, want the rejected and the unknown-version ones", len(replay))
	}
	if err := Replay(ctx, env.conn, []DeadLetter{{DLQTopic: dlq}}); err == nil {
		t.Error("a dead letter without a source topic was replayed")
	}

	fixed.Store(true)
	before := consumer.Stats().DeadLettered
	if err := Replay(ctx, env.conn, replay); err != nil {
		t.Fatal(err)
	}
	// The refused crop is handled now; the one this build cannot decode is dead-lettered again,
	// marked as replayed.
	waitFor(t, 30*time.Second, "the replayed records", func() bool {
		return handled(5) && consumer.Stats().DeadLettered == before+1
	})
	letters, _ = read()
	if len(letters) != 6 {
		t.Fatalf("%d dead letters after the replay, want 6", len(letters))
	}
	// Replayed in DLQ order: the unknown-version record went back first.
	again := letters[5]
	if again.Reason != "unknown-version" || again.Offset != int64(written) || len(again.Headers) != 1 ||
		again.Headers[0].Key != HeaderReplayedFrom || string(again.Headers[0].Value) != fmt.Sprintf("%s/0/%d", dlq, replay[0].DLQOffset) {
		t.Errorf("dead letter after the replay: reason %s from offset %d, headers %v", again.Reason, again.Offset, again.Headers)
	}
	// The replayed records are the originals plus the replay mark, without the DLQ's headers.
	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: env.conn.Brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer reader.Close()
	if err := reader.SetOffset(int64(written)); err != nil {
		t.Fatal(err)
	}
	for _, letter := range replay {
		message, err := reader.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(message.Value, letter.Value) || string(message.Key) != "cam-1" || len(message.Headers) != 1 || message.Headers[0].Key != HeaderReplayedFrom {
			t.Errorf("replayed record at offset %d: key %q, headers %v", message.Offset, message.Key, message.Headers)
		}
	}
}

// testPrepareAhead: Prepare sees each batch before the handler does, while the handler is still
// busy with the batch before it, and what it attaches reaches the handler.
func testPrepareAhead(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 2)
	records := makeRecords(t, []string{"cam-a", "cam-b"}, 30, 0)
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	putAll(t, producer, records)

	type token struct{ id string }
	var handling, prepared, preparedWhileHandling, unprepared atomic.Int64
	index := newMemoryIndex()
	startConsumer(t, env.conn, ConsumerOptions{
		Topic: topic, Group: randomName("group"), DLQTopic: dlq, BatchSize: 10,
		Prepare: func(batch []Message) {
			if handling.Load() > 0 {
				preparedWhileHandling.Add(1)
			}
			prepared.Add(1)
			for i := range batch {
				batch[i].Prepared = &token{id: batch[i].Record.ID}
			}
		},
	}, func(ctx context.Context, batch []Message) error {
		handling.Add(1)
		defer handling.Add(-1)
		for _, message := range batch {
			if mark, ok := message.Prepared.(*token); !ok || mark.id != message.Record.ID {
				unprepared.Add(1)
			}
		}
		time.Sleep(100 * time.Millisecond) // long enough for the next batch to be fetched
		index.write(batch)
		return nil
	})
	waitFor(t, 60*time.Second, "every record consumed", func() bool { return index.len() == len(records) })
	if unprepared.Load() != 0 {
		t.Errorf("%d records reached the handler without what Prepare attached", unprepared.Load())
	}
	if batches := prepared.Load(); preparedWhileHandling.Load() < batches/2 {
		t.Errorf("only %d of %d batches were prepared while the handler ran", preparedWhileHandling.Load(), batches)
	}
}

func testSlowConsumer(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 3)
	const perCamera = 100
	cameras := []string{"cam-a", "cam-b", "cam-c"}
	// A tiny producer buffer and a consumer slower than the producer: Kafka absorbs the
	// difference, the producer blocks rather than drops, and every record arrives.
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic, Buffer: 2, BatchSize: 2})
	index := newMemoryIndex()
	startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: dlq, BatchSize: 8},
		func(ctx context.Context, batch []Message) error {
			time.Sleep(10 * time.Millisecond)
			index.write(batch)
			return nil
		})
	putAll(t, producer, makeRecords(t, cameras, perCamera, 0))
	if stats := producer.Stats(); stats.Dropped != 0 || stats.Produced != perCamera*int64(len(cameras)) {
		t.Fatalf("producer stats %+v, want all %d produced and none dropped", stats, perCamera*len(cameras))
	}
	waitFor(t, 60*time.Second, "every record consumed", func() bool { return index.len() == perCamera*len(cameras) })
}

func testTwoConsumersShareAGroup(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 4)
	group := randomName("group")
	index := newMemoryIndex()
	var perConsumer [2]atomic.Int64
	for i := range perConsumer {
		startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: group, DLQTopic: dlq, BatchSize: 8},
			func(ctx context.Context, batch []Message) error {
				time.Sleep(2 * time.Millisecond)
				perConsumer[i].Add(int64(len(batch)))
				index.write(batch)
				return nil
			})
	}
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	// Keep records flowing until the group has rebalanced and both members have handled some.
	var records []cropstore.CropRecord
	deadline := time.Now().Add(45 * time.Second)
	for frame := int64(0); perConsumer[0].Load() == 0 || perConsumer[1].Load() == 0; frame += 10 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d records one consumer still has none: %d, %d", len(records), perConsumer[0].Load(), perConsumer[1].Load())
		}
		batch := makeRecords(t, []string{"cam-1", "cam-2", "cam-3", "cam-4", "cam-5", "cam-6"}, 10, frame)
		putAll(t, producer, batch)
		records = append(records, batch...)
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, 60*time.Second, "every record consumed by the group", func() bool { return index.len() == len(records) })
	for _, record := range records {
		if !index.has(record.ID) {
			t.Errorf("record %s lost across the rebalance", record.ID)
		}
	}
	t.Logf("records handled per consumer: %d, %d", perConsumer[0].Load(), perConsumer[1].Load())
}

func testLargestRecord(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 1)
	record := testRecord(t, "cam-1", 1, 0)
	value, err := Encode(record)
	if err != nil {
		t.Fatal(err)
	}
	// Pad the image so the encoded record is exactly MaxRecordBytes; the broker's default
	// message.max.bytes (1 MiB) must accept it.
	record.JPEG = append(record.JPEG, make([]byte, MaxRecordBytes-len(value))...)
	if value, err = Encode(record); err != nil || len(value) != MaxRecordBytes {
		t.Fatalf("encoded %d bytes, %v; want %d", len(value), err, MaxRecordBytes)
	}
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	putAll(t, producer, []cropstore.CropRecord{record, record, record})
	index := newMemoryIndex()
	startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: dlq}, index.handler)
	waitFor(t, 30*time.Second, "the largest record consumed", func() bool { return index.len() == 1 })
	index.mu.Lock()
	defer index.mu.Unlock()
	if !sameRecord(index.records[record.ID], record) {
		t.Fatal("largest record arrived changed")
	}
}

func testEnsureTopics(t *testing.T, env testEnv) {
	topic, dlq := newTopics(t, env, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Asking again with another partition count leaves the existing topic alone.
	if err := EnsureTopics(ctx, env.conn, Topic{Name: topic, Partitions: 5}, Topic{Name: dlq, Partitions: 1}); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	client := &kafka.Client{Addr: kafka.TCP(env.conn.Brokers...)}
	metadata, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic, dlq}})
	if err != nil {
		t.Fatal(err)
	}
	partitions := map[string]int{}
	for _, found := range metadata.Topics {
		if found.Error != nil {
			t.Fatalf("topic %s: %v", found.Name, found.Error)
		}
		partitions[found.Name] = len(found.Partitions)
	}
	if partitions[topic] != 3 || partitions[dlq] != 1 {
		t.Fatalf("partitions %v, want %s:3 %s:1", partitions, topic, dlq)
	}
	if err := EnsureTopics(ctx, env.conn, Topic{Name: "", Partitions: 1}); err == nil {
		t.Fatal("EnsureTopics accepted an empty topic name")
	}
}

// The cases below control the broker itself, so they run against the embedded one only.

func TestProducerBlocksWhileBrokerDown(t *testing.T) {
	t.Parallel()
	const buffer, batch, lanes = 3, 2, 4
	for _, tc := range []struct {
		name    string
		cameras []string
	}{
		{"one camera", []string{"cam-a"}},
		// Several lanes hold a batch each, but the buffer they share stays bounded.
		{"cameras in several lanes", []string{"cam-a", "cam-b", "cam-c", "cam-d", "cam-e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := freeLoopbackAddr(t)
			conn := Connection{Brokers: []string{addr}}
			topic := randomName("reid-test-crops")
			producer := newTestProducer(t, conn, ProducerOptions{Topic: topic, Buffer: buffer, BatchSize: batch, Lanes: lanes, RetryBackoffMax: 200 * time.Millisecond, MaxAttempts: 1})
			records := makeRecords(t, tc.cameras, 20, 0)
			most := buffer + batch*min(len(tc.cameras), lanes)

			accepted := 0
			var blockedErr error
			for _, record := range records[:most+2] {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				err := producer.Put(ctx, record)
				cancel()
				if err != nil {
					blockedErr = err
					break
				}
				accepted++
			}
			if !errors.Is(blockedErr, context.DeadlineExceeded) {
				t.Fatalf("Put with the broker down and the buffer full returned %v after %d records, want it to block until its deadline", blockedErr, accepted)
			}
			if accepted > most {
				t.Fatalf("%d records accepted with a buffer of %d and batches of %d in %d lanes", accepted, buffer, batch, lanes)
			}
			if stats := producer.Stats(); stats.Dropped != 0 || stats.Buffered != int64(accepted) || stats.Errors == 0 {
				t.Fatalf("stats while blocked %+v, want %d buffered, write errors, nothing dropped", stats, accepted)
			}
			// These Puts block until the broker comes up.
			rest := records[accepted+1:]
			putDone := make(chan error, 1)
			go func() {
				for _, record := range rest {
					if err := producer.Put(context.Background(), record); err != nil {
						putDone <- err
						return
					}
				}
				putDone <- nil
			}()
			time.Sleep(300 * time.Millisecond)

			ctx := startBrokerAt(t, addr, Topic{Name: topic, Partitions: 2})
			if err := <-putDone; err != nil {
				t.Fatal(err)
			}
			if err := producer.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			want := accepted + len(rest)
			if stats := producer.Stats(); stats.Produced != int64(want) || stats.Dropped != 0 || stats.Buffered != 0 {
				t.Fatalf("stats after the broker came up %+v, want %d produced", stats, want)
			}
			index := newMemoryIndex()
			startConsumer(t, conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: topic + ".dlq"}, index.handler)
			waitFor(t, 30*time.Second, "every accepted record consumed", func() bool { return index.len() == want })
			index.mu.Lock()
			defer index.mu.Unlock()
			for _, camera := range tc.cameras {
				if frames := index.order[camera]; !slices.IsSorted(frames) {
					t.Errorf("camera %s frames arrived as %v after the retries, want them in order", camera, frames)
				}
			}
		})
	}
}

// startBrokerAt starts a broker on addr (where producers have been failing to connect) with
// topic, and returns a context for the rest of the test, bounded to a minute.
func startBrokerAt(t *testing.T, addr string, topic Topic) context.Context {
	t.Helper()
	broker, err := StartBroker(BrokerOptions{Addr: addr, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := EnsureTopics(ctx, Connection{Brokers: []string{addr}}, topic); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// lineCounter keeps the log lines written through its logger.
type lineCounter struct {
	mu    sync.Mutex
	lines []string
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, string(p))
	return len(p), nil
}

func (c *lineCounter) logger() *slog.Logger { return slog.New(slog.NewTextHandler(c, nil)) }

func (c *lineCounter) count(word string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, line := range c.lines {
		if strings.Contains(line, word) {
			n++
		}
	}
	return n
}

func TestProducerDropModeCountsDrops(t *testing.T) {
	t.Parallel()
	addr := freeLoopbackAddr(t)
	conn := Connection{Brokers: []string{addr}}
	topic := randomName("reid-test-crops")
	logs := &lineCounter{}
	producer := newTestProducer(t, conn, ProducerOptions{Topic: topic, Buffer: 2, BatchSize: 2, DropWhenFull: true,
		RetryBackoffMax: 200 * time.Millisecond, MaxAttempts: 1, Logger: logs.logger()})
	records := makeRecords(t, []string{"cam-a"}, 30, 0)
	start := time.Now()
	for _, record := range records {
		if err := producer.Put(context.Background(), record); err != nil {
			t.Fatal(err)
		}
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("drop-mode Puts took %v with the broker down; they must not block", elapsed)
	}
	dropped := producer.Stats().Dropped
	if dropped < int64(len(records))-4 {
		t.Fatalf("%d dropped of %d with a buffer of 2 and batches of 2", dropped, len(records))
	}
	if got := logs.count("crop dropped"); got != dropped {
		t.Fatalf("%d drop log lines for %d drops", got, dropped)
	}

	ctx := startBrokerAt(t, addr, Topic{Name: topic, Partitions: 1})
	if err := producer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stats := producer.Stats()
	if stats.Produced+stats.Dropped != int64(len(records)) {
		t.Fatalf("stats %+v: produced + dropped != %d records", stats, len(records))
	}
	index := newMemoryIndex()
	startConsumer(t, conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: topic + ".dlq"}, index.handler)
	waitFor(t, 30*time.Second, "every produced record consumed", func() bool { return index.len() == int(stats.Produced) })
}

// TestBrokerRestartKeepsTopicsAndOffsets restarts the embedded broker on its data dir, once after a
// graceful Close and once after a SIGKILL of the process it runs in: acknowledged records, topics
// and committed offsets must all survive both.
func TestBrokerRestartKeepsTopicsAndOffsets(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// start runs a broker on dataDir and returns its connection and how it ends.
		start func(t *testing.T, dataDir string) (Connection, func())
	}{
		{"closed", func(t *testing.T, dataDir string) (Connection, func()) {
			broker, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", DataDir: dataDir, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			return Connection{Brokers: broker.Addrs()}, broker.Close
		}},
		{"killed", startBrokerProcess},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dataDir := t.TempDir()
			testBrokerRestart(t, func() (Connection, func()) { return c.start(t, dataDir) })
		})
	}
}

func testBrokerRestart(t *testing.T, start func() (Connection, func())) {
	conn, stop := start()
	topic, dlq := newTopics(t, testEnv{conn: conn}, 3)
	group := randomName("group")
	before := makeRecords(t, []string{"cam-a", "cam-b"}, 25, 0)
	unread := makeRecords(t, []string{"cam-a", "cam-b"}, 5, 500)
	after := makeRecords(t, []string{"cam-a", "cam-b"}, 10, 1000)

	producer, err := NewProducer(conn, ProducerOptions{Topic: topic, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, producer, before)
	index := newMemoryIndex()
	first := startConsumer(t, conn, ConsumerOptions{Topic: topic, Group: group, DLQTopic: dlq}, index.handler)
	waitFor(t, 30*time.Second, "first records committed", func() bool { return first.Stats().Handled == int64(len(before)) })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	// Acknowledged but not consumed when the broker ends.
	putAll(t, producer, unread)
	if err := producer.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop()

	conn, stop = start()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...)}
	metadata, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	if len(metadata.Topics) != 1 || metadata.Topics[0].Error != nil || len(metadata.Topics[0].Partitions) != 3 {
		t.Fatalf("after restart topic metadata %+v, want %s with 3 partitions", metadata.Topics, topic)
	}
	producer = newTestProducer(t, conn, ProducerOptions{Topic: topic})
	putAll(t, producer, after)
	second := newMemoryIndex()
	startConsumer(t, conn, ConsumerOptions{Topic: topic, Group: group, DLQTopic: dlq}, second.handler)
	want := len(unread) + len(after)
	waitFor(t, 30*time.Second, "records acknowledged before and produced after the restart", func() bool { return second.len() == want })
	time.Sleep(500 * time.Millisecond) // give stray redeliveries a chance to show
	for _, record := range before {
		if second.has(record.ID) {
			t.Fatalf("record %s committed before the restart was delivered again: offsets were not kept", record.ID)
		}
	}
	for _, record := range append(unread, after...) {
		if !second.has(record.ID) {
			t.Fatalf("record %s lost", record.ID)
		}
	}
	if second.len() != want {
		t.Fatalf("%d records after restart, want %d", second.len(), want)
	}
}

func TestOpenStartsEmbeddedBrokerAndTopics(t *testing.T) {
	t.Parallel()
	cfg := config.Default().Stream
	cfg.EmbeddedAddr = "127.0.0.1:0"
	cfg.CropsTopic = randomName("reid-test-crops")
	cfg.DLQTopic = cfg.CropsTopic + ".dlq"
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster, err := Open(ctx, cfg, dataDir, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	if cluster.Embedded == nil {
		t.Fatal("no brokers configured, but Open did not start the embedded one")
	}
	if _, err := os.Stat(filepath.Join(dataDir, "broker")); err != nil {
		t.Fatalf("embedded broker data dir: %v", err)
	}
	client := &kafka.Client{Addr: kafka.TCP(cluster.Conn.Brokers...)}
	metadata, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{cfg.CropsTopic, cfg.DLQTopic}})
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range metadata.Topics {
		want := map[string]int{cfg.CropsTopic: cfg.Partitions, cfg.DLQTopic: 1}[topic.Name]
		if topic.Error != nil || len(topic.Partitions) != want {
			t.Errorf("topic %s: %d partitions, %v; want %d", topic.Name, len(topic.Partitions), topic.Error, want)
		}
	}

	// With brokers configured, Open starts nothing and uses them.
	cfg.Brokers = cluster.Conn.Brokers
	external, err := Open(ctx, cfg, t.TempDir(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer external.Close()
	if external.Embedded != nil || external.Conn.Brokers[0] != cluster.Conn.Brokers[0] {
		t.Fatalf("Open with brokers configured: %+v", external)
	}
}

func TestBrokerOptionsFrom(t *testing.T) {
	cfg := config.Default().Stream
	options := BrokerOptionsFrom(cfg, "/srv/reid", nil)
	if options.Addr != cfg.EmbeddedAddr || options.DataDir != filepath.Join("/srv/reid", "broker") || !options.SyncWrites {
		t.Errorf("broker options from the default config: %+v; want its address, <data_dir>/broker and fsynced writes", options)
	}
	cfg.EmbeddedSyncWrites = false
	if BrokerOptionsFrom(cfg, "/srv/reid", nil).SyncWrites {
		t.Error("stream.embedded_sync_writes false still syncs")
	}
}

func TestStartBrokerRejectsBadAddress(t *testing.T) {
	for _, addr := range []string{"no-port", "127.0.0.1:notaport", "127.0.0.1:70000"} {
		if broker, err := StartBroker(BrokerOptions{Addr: addr, Logger: testLogger()}); err == nil {
			broker.Close()
			t.Errorf("StartBroker(%q) succeeded", addr)
		}
	}
}

func TestProducerCloseDrainsBuffer(t *testing.T) {
	t.Parallel()
	env := embeddedEnv(t)
	topic, dlq := newTopics(t, env, 2)
	records := makeRecords(t, []string{"cam-a", "cam-b"}, 150, 0)
	producer, err := NewProducer(env.conn, ProducerOptions{Topic: topic, Buffer: 512, BatchTimeout: time.Second, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for _, record := range records {
		if err := producer.Put(context.Background(), record); err != nil {
			t.Fatal(err)
		}
	}
	// No Flush: Close alone must write everything still buffered.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := producer.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if stats := producer.Stats(); stats.Produced != int64(len(records)) || stats.Buffered != 0 {
		t.Fatalf("stats after Close %+v, want all %d produced", stats, len(records))
	}
	if err := producer.Put(context.Background(), records[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	index := newMemoryIndex()
	startConsumer(t, env.conn, ConsumerOptions{Topic: topic, Group: randomName("group"), DLQTopic: dlq}, index.handler)
	waitFor(t, 30*time.Second, "every record consumed", func() bool { return index.len() == len(records) })
}

func TestProducerCloseAccountsForUnwritten(t *testing.T) {
	t.Parallel()
	logs := &lineCounter{}
	conn := Connection{Brokers: []string{freeLoopbackAddr(t)}} // nothing listens: every write fails
	producer, err := NewProducer(conn, ProducerOptions{Topic: "crops", Buffer: 8, BatchSize: 4, MaxAttempts: 1, RetryBackoffMax: 100 * time.Millisecond, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	records := makeRecords(t, []string{"cam-a"}, 6, 0)
	for _, record := range records {
		if err := producer.Put(context.Background(), record); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := producer.Close(ctx); err == nil {
		t.Fatal("Close with the broker down returned nil, but nothing was written")
	}
	stats := producer.Stats()
	if stats.Abandoned != int64(len(records)) || stats.Produced != 0 || stats.Buffered != 0 {
		t.Fatalf("stats %+v, want all %d abandoned", stats, len(records))
	}
	if got := logs.count("crop not sent"); got != int64(len(records)) {
		t.Fatalf("%d log lines for %d abandoned records", got, len(records))
	}
}

func TestTopicPartitions(t *testing.T) {
	t.Parallel()
	env := embeddedEnv(t)
	topic, dlq := newTopics(t, env, 3)
	missing := randomName("reid-test-missing")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	partitions, err := TopicPartitions(ctx, env.conn, topic, dlq, missing)
	if err != nil {
		t.Fatal(err)
	}
	if partitions[topic] != 3 || partitions[dlq] != 1 || partitions[missing] != 0 {
		t.Errorf("partitions %v, want 3, 1 and 0 (missing)", partitions)
	}
	// Asking created nothing.
	if again, err := TopicPartitions(ctx, env.conn, missing); err != nil || again[missing] != 0 {
		t.Errorf("after asking, the missing topic has %v (%v)", again, err)
	}
}
