package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/stream"
)

// TestDLQCommands: poison records dead-lettered by a real consumer are listed by `reid dlq list`
// beside a running broker, replayed by `reid dlq replay` (and, still broken, come back marked),
// and listed again from the data dir once that broker has stopped.
func TestDLQCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	addr := freeAddr(t)
	configPath := filepath.Join(dataDir, "reid.yaml")
	if err := os.WriteFile(configPath, []byte("stream:\n  embedded_addr: "+addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	options := loadOptions(t, dataDir)
	options.Stream.EmbeddedAddr = addr
	// The broker a running `reid run` would hold.
	running, err := stream.Open(ctx, options.Stream, dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			running.Close()
		}
	}()

	broken := cropstore.CropRecord{ID: cropstore.NewID("lobby", time.Now(), 7, 0), Camera: "lobby", Time: time.Now(), JPEG: realJPEG(t)}
	broken.JPEG = broken.JPEG[:len(broken.JPEG)/2]
	brokenBytes, err := stream.Encode(broken)
	if err != nil {
		t.Fatal(err)
	}
	writer := &kafka.Writer{Addr: kafka.TCP(running.Conn.Brokers...), Topic: options.Stream.CropsTopic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer writer.Close()
	if err := writer.WriteMessages(ctx,
		kafka.Message{Key: []byte("lobby"), Value: brokenBytes},
		kafka.Message{Key: []byte("lobby"), Value: []byte("not a crop record")},
	); err != nil {
		t.Fatal(err)
	}
	consumeUntil := func(deadLetters int64) {
		t.Helper()
		consumer, err := stream.NewConsumer(running.Conn, stream.ConsumerOptions{
			Topic: options.Stream.CropsTopic, Group: options.Stream.EmbedGroup, DLQTopic: options.Stream.DLQTopic, ValidateJPEG: true,
		}, func(context.Context, []stream.Message) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- consumer.Run(runCtx) }()
		for consumer.Stats().DeadLettered < deadLetters && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := consumer.Stats().DeadLettered; got != deadLetters {
			t.Fatalf("%d records dead-lettered, want %d", got, deadLetters)
		}
	}
	consumeUntil(2)

	dlq := func(args ...string) string {
		t.Helper()
		out, err := runReid(t, append([]string{"--config", configPath, "--data-dir", dataDir, "dlq"}, args...)...)
		if err != nil {
			t.Fatalf("reid dlq %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	listed := dlq("list")
	if !strings.Contains(listed, "2 dead letters: bad-jpeg 1, not-crop-record 1") || !strings.Contains(listed, broken.ID) ||
		!strings.Contains(listed, options.Stream.EmbedGroup) {
		t.Errorf("reid dlq list:\n%s", listed)
	}
	if out := dlq("list", "--reason", "bad-jpeg", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); !strings.Contains(out, "0 dead letters") {
		t.Errorf("a --since after every dead letter still lists some:\n%s", out)
	}
	if out := dlq("replay", "--reason", "bad-jpeg", "--dry-run"); !strings.Contains(out, "would replay 1 records (1 dead letters selected, 0 without a source to replay to, 0 erased on request)") {
		t.Errorf("dry run: %s", out)
	}
	if out := dlq("replay", "--crop", broken.ID); !strings.Contains(out, "replayed 1 records") {
		t.Errorf("replay: %s", out)
	}
	// Still broken: the embedder's group dead-letters it once more, marked as replayed.
	consumeUntil(1)

	running.Close() // the pipeline stops; the DLQ is read from the data dir
	stopped = true
	var entries []deadLetterEntry
	scanner := bufio.NewScanner(strings.NewReader(dlq("list", "--json")))
	for scanner.Scan() {
		var entry deadLetterEntry
		if err := json.Unmarshal(scanner.Bytes(), &entry); err != nil {
			t.Fatalf("%q: %v", scanner.Text(), err)
		}
		entries = append(entries, entry)
	}
	if len(entries) != 3 {
		t.Fatalf("%d dead letters listed from the stopped broker's data, want 3", len(entries))
	}
	again := entries[2]
	if again.CropID != broken.ID || again.Reason != "bad-jpeg" || again.ReplayedFrom != fmt.Sprintf("%s/0/%d", options.Stream.DLQTopic, dlqOffsetOf(entries, broken.ID)) {
		t.Errorf("the replayed record's new dead letter: %+v", again)
	}

	// Once its crop is erased on request, a dead letter is not sent back.
	store, err := cropstore.OpenLocal(filepath.Join(dataDir, "crops"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RecordErasure(ctx, cropstore.Erasure{CropIDs: []string{broken.ID}}); err != nil {
		t.Fatal(err)
	}
	if out := dlq("replay", "--crop", broken.ID); !strings.Contains(out, "replayed 0 records (2 dead letters selected, 0 without a source to replay to, 2 erased on request)") {
		t.Errorf("replay of an erased crop's dead letters: %s", out)
	}

	// Nothing consumes the DLQ, so its erased dead letters go when the operator purges it.
	firstTwo := entries[1].Time.Add(time.Millisecond).UTC().Format(time.RFC3339Nano)
	if out := dlq("purge", "--until", firstTwo, "--dry-run"); !strings.Contains(out, "would delete the 2 dead letters written before") || !strings.Contains(out, "(1 of crops erased on request)") {
		t.Errorf("purge --dry-run: %s", out)
	}
	if out := dlq("list"); !strings.Contains(out, "3 dead letters") {
		t.Errorf("a dry run deleted dead letters:\n%s", out)
	}
	if out := dlq("purge", "--until", time.Now().Add(time.Minute).UTC().Format(time.RFC3339)); !strings.Contains(out, "deleted 3 dead letters written before") || !strings.Contains(out, "(2 of crops erased on request)") {
		t.Errorf("purge: %s", out)
	}
	if out := dlq("list"); !strings.Contains(out, "0 dead letters") {
		t.Errorf("after the purge:\n%s", out)
	}
	if out, err := runReid(t, "--config", configPath, "--data-dir", dataDir, "dlq", "purge"); err == nil || !strings.Contains(err.Error(), "name --until") {
		t.Errorf("purge without --until: %v\n%s", err, out)
	}
}

// dlqOffsetOf is the DLQ offset of a crop's first dead letter.
func dlqOffsetOf(entries []deadLetterEntry, cropID string) int {
	for _, entry := range entries {
		if entry.CropID == cropID {
			var offset int
			fmt.Sscanf(entry.Position[strings.LastIndex(entry.Position, "/")+1:], "%d", &offset)
			return offset
		}
	}
	return -1
}

// The dlq commands refuse bad flags before touching a broker.
func TestDLQCommandRejectsBadTimes(t *testing.T) {
	out, err := runReid(t, "--data-dir", t.TempDir(), "dlq", "list", "--since", "yesterday")
	if err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("--since yesterday: %v\n%s", err, out)
	}
}
