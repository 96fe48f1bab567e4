package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestPurge runs purges against the embedded broker as consumer groups come along: nothing goes
// that some group has not consumed, "before" bounds what goes until all is asked for, and what went
// can no longer be read.
func TestPurge(t *testing.T) {
	env := embeddedEnv(t)
	topic, _ := newTopics(t, env, 2)
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	putAll(t, producer, makeRecords(t, []string{"gate", "hall", "yard"}, 8, 0))
	time.Sleep(50 * time.Millisecond) // broker timestamps are in milliseconds
	erasedAt := time.Now()
	time.Sleep(50 * time.Millisecond)
	putAll(t, producer, makeRecords(t, []string{"gate", "hall", "yard"}, 4, 100))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	purger, err := NewPurger(env.conn, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer purger.Close()
	admin := &kafka.Client{Addr: kafka.TCP(env.conn.Brokers...), Timeout: 10 * time.Second}
	ranges, err := partitionRanges(ctx, admin, topic)
	if err != nil {
		t.Fatal(err)
	}
	// before is each partition's first record written after erasedAt.
	before, err := purger.firstAtOrAfter(ctx, ranges, erasedAt)
	if err != nil {
		t.Fatal(err)
	}
	var total, older int64
	for _, span := range ranges {
		total += span.last - span.first
		older += before[span.partition] - span.first
	}
	if total != 36 || older != 24 {
		t.Fatalf("%d records, %d before erasedAt; want 36 and 24", total, older)
	}
	commit := func(group string, offset func(span partitionRange) int64) {
		t.Helper()
		offsets := map[string][]kafka.OffsetCommit{}
		for _, span := range ranges {
			offsets[topic] = append(offsets[topic], kafka.OffsetCommit{Partition: span.partition, Offset: offset(span)})
		}
		response, err := admin.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: offsets})
		if err != nil {
			t.Fatal(err)
		}
		for _, partitions := range response.Topics {
			for _, partition := range partitions {
				if partition.Error != nil {
					t.Fatalf("commit %s: %v", group, partition.Error)
				}
			}
		}
	}
	readable := func() (n int64) {
		t.Helper()
		now, err := partitionRanges(ctx, admin, topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, span := range now {
			n += span.last - span.first
		}
		return n
	}

	steps := []struct {
		name     string
		prepare  func()
		all      bool
		deleted  int64
		complete bool
		behind   []string
		// older is how many records from before erasedAt Readable finds left after the purge.
		older int64
	}{
		{name: "no group has consumed anything", all: true, complete: false, older: 24},
		{name: "the archiver is done, the embedder has two records of each partition", prepare: func() {
			commit("archiver", func(span partitionRange) int64 { return span.last })
			commit("embedder", func(span partitionRange) int64 { return span.first + 2 })
		}, deleted: 4, behind: []string{"embedder"}, older: 20},
		{name: "the embedder has caught up", prepare: func() {
			commit("embedder", func(span partitionRange) int64 { return span.last })
		}, deleted: 20, complete: true},
		{name: "the same again deletes nothing", complete: true},
		{name: "everything consumed", all: true, deleted: 12, complete: true},
	}
	for _, step := range steps {
		if step.prepare != nil {
			step.prepare()
		}
		left := readable()
		result, err := purger.Purge(ctx, erasedAt, step.all)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if result.Deleted != step.deleted || result.Complete != step.complete || !slices.Equal(result.Behind, step.behind) {
			t.Errorf("%s: %+v; want %d deleted, complete %v, behind %v", step.name, result, step.deleted, step.complete, step.behind)
		}
		if now := readable(); now != left-step.deleted {
			t.Errorf("%s: %d records readable after deleting %d of %d", step.name, now, result.Deleted, left)
		}
		older, behind, err := purger.Readable(ctx, erasedAt)
		if err != nil || older != step.older || !slices.Equal(behind, step.behind) {
			t.Errorf("%s: Readable says %d from before erasedAt, behind %v (%v); want %d, %v", step.name, older, behind, err, step.older, step.behind)
		}
	}

	// A consumer that starts from the beginning now reads the record written after the purge, and
	// none before it.
	purged, err := partitionRanges(ctx, admin, topic)
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, producer, makeRecords(t, []string{"gate"}, 1, 200))
	found := 0
	for _, span := range purged {
		reader := kafka.NewReader(kafka.ReaderConfig{Brokers: env.conn.Brokers, Topic: topic, Partition: span.partition, MaxWait: 100 * time.Millisecond})
		reader.SetOffset(kafka.FirstOffset)
		readCtx, cancelRead := context.WithTimeout(ctx, 2*time.Second)
		message, err := reader.ReadMessage(readCtx)
		cancelRead()
		reader.Close()
		switch {
		case err == nil && (message.Offset != span.last || string(message.Key) != "gate"):
			t.Errorf("partition %d: read offset %d (%s) first, want the new record at %d", span.partition, message.Offset, message.Key, span.last)
		case err == nil:
			found++
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			t.Errorf("partition %d: %v", span.partition, err)
		}
	}
	if found != 1 {
		t.Errorf("the new record was read first on %d partitions, want 1", found)
	}
}

// DeleteRecords speaks each version a broker may offer: 0 and 1 (Kafka 1.1 to 2.3), 2 (2.4 on, and
// the only one Kafka 4 keeps), encoded by kafka-go from the declared fields.
func TestDeleteRecordsVersions(t *testing.T) {
	for _, version := range []int16{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			versions := kversion.Stable()
			versions.SetMaxKeyVersion(21, version)
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.MaxVersions(versions), kfake.SeedTopics(1, "crops"))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			conn := Connection{Brokers: cluster.ListenAddrs()}
			putAll(t, newTestProducer(t, conn, ProducerOptions{Topic: "crops"}), makeRecords(t, []string{"gate"}, 5, 0))
			client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: conn.transport(), Timeout: 10 * time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start, err := deleteRecords(ctx, client, "crops", 0, 3)
			if err != nil || start != 3 {
				t.Fatalf("delete before 3: start %d, %v", start, err)
			}
			ranges, err := partitionRanges(ctx, client, "crops")
			if err != nil || ranges[0].first != 3 || ranges[0].last != 5 {
				t.Errorf("after the delete: %+v, %v; want records 3 and 4 left", ranges, err)
			}
			if _, err := deleteRecords(ctx, client, "crops", 0, 9); !errors.Is(err, kafka.OffsetOutOfRange) {
				t.Errorf("a delete past the end: %v, want OffsetOutOfRange", err)
			}
		})
	}
}

// TestEmbeddedBrokerFilesGoWithAPurge: the embedded broker rolls its log files at SegmentBytes,
// so after records are purged only the file they share with later records is left holding any of
// them: at most one segment's worth, unreadable.
func TestEmbeddedBrokerFilesGoWithAPurge(t *testing.T) {
	const segmentBytes = 16 << 10
	dataDir := t.TempDir()
	broker, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", DataDir: dataDir, Logger: testLogger(), SegmentBytes: segmentBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	conn := Connection{Brokers: broker.Addrs()}
	topic := randomName("reid-test-segments")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, conn, Topic{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	files := func() (bases []int64, bytes int64) {
		t.Helper()
		entries, err := os.ReadDir(filepath.Join(dataDir, "partitions", topic+"-0"))
		if err != nil {
			t.Fatal(err)
		}
		for _, entry := range entries {
			base, isSegment := strings.CutSuffix(entry.Name(), ".dat")
			if !isSegment {
				continue
			}
			offset, err := strconv.ParseInt(base, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			info, err := entry.Info()
			if err != nil {
				t.Fatal(err)
			}
			bases, bytes = append(bases, offset), bytes+info.Size()
		}
		slices.Sort(bases)
		return bases, bytes
	}
	producer := newTestProducer(t, conn, ProducerOptions{Topic: topic, BatchSize: 1})
	putAll(t, producer, makeRecords(t, []string{"gate"}, 120, 0))
	before, beforeBytes := files()
	if len(before) < 4 {
		t.Fatalf("%d log files for %d bytes, want one every %d bytes", len(before), beforeBytes, segmentBytes)
	}
	time.Sleep(20 * time.Millisecond)
	cut := time.Now()
	time.Sleep(20 * time.Millisecond)
	putAll(t, producer, makeRecords(t, []string{"gate"}, 120, 120))

	purger, err := NewPurger(conn, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer purger.Close()
	if deleted, err := purger.DeleteBefore(ctx, cut); err != nil || deleted != 120 {
		t.Fatalf("purged %d records (%v), want the 120 before the cut", deleted, err)
	}
	after, _ := files()
	holding := 0 // files that hold records from before the cut: they start before offset 120
	for _, base := range after {
		if base < 120 {
			holding++
		}
	}
	if holding > 1 {
		t.Errorf("log files after the purge start at offsets %v: %d hold records from before the cut, want at most the one shared with later records", after, holding)
	}
}
