package stream

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHelperConsumerProcess is not a test: TestConsumerSIGKILLMidStream runs the test binary again
// with STREAM_CHILD_* set, and this function then acts as a separate consumer process that appends
// every handled id to a file (its durable write) before returning nil.
func TestHelperConsumerProcess(t *testing.T) {
	brokers := os.Getenv("STREAM_CHILD_BROKERS")
	if brokers == "" {
		return // run directly by `go test`: nothing to do
	}
	output, err := os.OpenFile(os.Getenv("STREAM_CHILD_OUTPUT"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer output.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	consumer, err := NewConsumer(Connection{Brokers: strings.Split(brokers, ",")}, ConsumerOptions{
		Topic: os.Getenv("STREAM_CHILD_TOPIC"), Group: os.Getenv("STREAM_CHILD_GROUP"), DLQTopic: os.Getenv("STREAM_CHILD_TOPIC") + ".dlq",
		BatchSize: 10, SessionTimeout: 6 * time.Second, Logger: testLogger(),
	}, func(ctx context.Context, batch []Message) error {
		var lines strings.Builder
		for _, message := range batch {
			lines.WriteString(message.Record.ID + "\n")
		}
		if _, err := output.WriteString(lines.String()); err != nil {
			return err
		}
		if err := output.Sync(); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond) // a slow embedder, so the kill lands mid-stream
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConsumerSIGKILLMidStream kills a consumer process without warning (no commit, no leaving the
// group), starts another in the same group, and checks that every record ends up written: the
// records the dead one wrote but never committed come again, and nothing is skipped.
func TestConsumerSIGKILLMidStream(t *testing.T) {
	t.Parallel()
	env := embeddedEnv(t)
	topic, _ := newTopics(t, env, 2)
	records := makeRecords(t, []string{"cam-a", "cam-b", "cam-c"}, 120, 0)
	producer := newTestProducer(t, env.conn, ProducerOptions{Topic: topic})
	putAll(t, producer, records)

	outputPath := t.TempDir() + "/written.txt"
	group := randomName("group")
	startChild := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperConsumerProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"STREAM_CHILD_BROKERS="+strings.Join(env.conn.Brokers, ","),
			"STREAM_CHILD_TOPIC="+topic, "STREAM_CHILD_GROUP="+group, "STREAM_CHILD_OUTPUT="+outputPath)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	written := func() (lines []string) {
		file, err := os.Open(outputPath)
		if err != nil {
			return nil
		}
		defer file.Close()
		scanner := bufio.NewScanner(file)
		for scanner.Scan() {
			lines = append(lines, scanner.Text())
		}
		return lines
	}

	first := startChild()
	waitFor(t, 60*time.Second, "the first consumer process to write 100 records", func() bool { return len(written()) >= 100 })
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	atKill := len(written())
	if atKill >= len(records) {
		t.Fatalf("the first consumer wrote all %d records before the kill; the test needs it killed mid-stream", atKill)
	}

	second := startChild()
	defer func() {
		second.Process.Signal(syscall.SIGTERM)
		second.Wait()
	}()
	distinct := func() map[string]int {
		counts := map[string]int{}
		for _, id := range written() {
			counts[id]++
		}
		return counts
	}
	waitFor(t, 90*time.Second, "every record written after the restart", func() bool { return len(distinct()) >= len(records) })
	counts := distinct()
	for _, record := range records {
		if counts[record.ID] == 0 {
			t.Errorf("record %s never written", record.ID)
		}
	}
	if len(counts) != len(records) {
		t.Errorf("%d distinct ids written, want %d", len(counts), len(records))
	}
	t.Logf("killed after %d writes; %d writes in all for %d records (redeliveries absorbed by idempotent writes)", atKill, len(written()), len(records))
}

// TestHelperBrokerProcess is not a test: startBrokerProcess runs the test binary again with
// STREAM_CHILD_BROKER_DIR set, and this function then serves the embedded broker on that data dir,
// printing its address, until the process is killed.
func TestHelperBrokerProcess(t *testing.T) {
	dataDir := os.Getenv("STREAM_CHILD_BROKER_DIR")
	if dataDir == "" {
		return // run directly by `go test`: nothing to do
	}
	broker, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", DataDir: dataDir, SyncWrites: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	fmt.Println(broker.Addrs()[0])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

// startBrokerProcess runs the embedded broker on dataDir in a child process; the returned function
// SIGKILLs it, so the broker gets no chance to flush or close anything.
func startBrokerProcess(t *testing.T, dataDir string) (Connection, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBrokerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STREAM_CHILD_BROKER_DIR="+dataDir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	timeout := time.AfterFunc(30*time.Second, kill)
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	timeout.Stop()
	if err != nil {
		kill()
		t.Fatalf("broker process gave no address: %v", err)
	}
	return Connection{Brokers: []string{strings.TrimSpace(addr)}}, kill
}
