package stream

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestTopicRetention creates a topic the way reid does, with a retention, on the embedded broker
// with a fast retention check: the topic carries retention.ms, and records older than it leave
// the log (its first offset moves past them), so a broker that runs for months stays bounded.
func TestTopicRetention(t *testing.T) {
	broker, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(), RetentionCheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	conn := Connection{Brokers: broker.Addrs()}
	topic := randomName("reid-test-retention")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, conn, Topic{Name: topic, Partitions: 1, Retention: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Timeout: 10 * time.Second}
	described, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	retention := ""
	for _, resource := range described.Resources {
		for _, entry := range resource.ConfigEntries {
			if entry.ConfigName == "retention.ms" {
				retention = entry.ConfigValue
			}
		}
	}
	if retention != "2000" {
		t.Fatalf("topic retention.ms = %q, want 2000", retention)
	}

	producer := newTestProducer(t, conn, ProducerOptions{Topic: topic})
	putAll(t, producer, makeRecords(t, []string{"gate"}, 20, 0))
	firstOffset := func() int64 {
		listed, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}}})
		if err != nil {
			t.Fatal(err)
		}
		return listed.Topics[topic][0].FirstOffset
	}
	if first := firstOffset(); first != 0 {
		t.Fatalf("first offset %d right after producing, want 0", first)
	}
	waitFor(t, 30*time.Second, "records past retention to be deleted", func() bool { return firstOffset() >= 20 })
}
