package main

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// syncBuffer is an io.Writer the test can read while the command writes.
type syncBuffer struct {
	mu   sync.Mutex
	text strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.String()
}

func TestBrokerCommandServesTopicsUntilCancelled(t *testing.T) {
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	root := newRootCommand()
	root.SetArgs([]string{"broker", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "error"})
	root.SetOut(out)
	root.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatal("reid broker printed no address")
		}
		select {
		case err := <-done:
			t.Fatalf("reid broker ended early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	addr := strings.TrimSpace(out.String())
	client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	metadata, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{"crops", "crops.dlq"}})
	if err != nil {
		t.Fatal(err)
	}
	partitions := map[string]int{}
	for _, topic := range metadata.Topics {
		partitions[topic.Name] = len(topic.Partitions)
	}
	if partitions["crops"] != 4 || partitions["crops.dlq"] != 1 {
		t.Fatalf("topics %v, want crops:4 crops.dlq:1 (the config defaults)", partitions)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reid broker after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reid broker did not stop when its context ended")
	}
}
