package stream

// kafka-go speaks most of the Kafka protocol but does not wrap DeleteRecords (API key 21), which
// moves a partition's log start offset forward so that the records before it can no longer be
// read and their files go. The purge after an erasure needs it (purge.go), so its request and
// response are declared here in kafka-go's protocol form and registered with kafka-go, which then
// encodes them, negotiates the version with the broker and routes each to its partition's leader.

import (
	"context"
	"fmt"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

func init() {
	protocol.Register(&deleteRecordsRequest{}, &deleteRecordsResponse{})
}

// Versions 0 and 1 are the same on the wire (1 only allows throttling); 2 is the same fields in
// the flexible encoding (compact strings and arrays, tagged fields), which kafka-go uses for a
// message with a tag field, and which Kafka 4 requires.
type deleteRecordsRequest struct {
	_         struct{}                    `kafka:"min=v2,max=v2,tag"`
	Topics    []deleteRecordsRequestTopic `kafka:"min=v0,max=v2"`
	TimeoutMs int32                       `kafka:"min=v0,max=v2"`
}

type deleteRecordsRequestTopic struct {
	Topic      string                          `kafka:"min=v0,max=v2"`
	Partitions []deleteRecordsRequestPartition `kafka:"min=v0,max=v2"`
}

type deleteRecordsRequestPartition struct {
	Partition int32 `kafka:"min=v0,max=v2"`
	Offset    int64 `kafka:"min=v0,max=v2"`
}

func (r *deleteRecordsRequest) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

// Broker routes the request to the leader of its one partition: deleteRecords sends one
// partition per request.
func (r *deleteRecordsRequest) Broker(cluster protocol.Cluster) (protocol.Broker, error) {
	topic, partition := r.Topics[0].Topic, r.Topics[0].Partitions[0].Partition
	for _, candidate := range cluster.Topics[topic].Partitions {
		if candidate.ID == partition {
			return cluster.Brokers[candidate.Leader], nil
		}
	}
	return protocol.Broker{ID: -1}, fmt.Errorf("no leader known for %s partition %d", topic, partition)
}

type deleteRecordsResponse struct {
	_              struct{}                     `kafka:"min=v2,max=v2,tag"`
	ThrottleTimeMs int32                        `kafka:"min=v0,max=v2"`
	Topics         []deleteRecordsResponseTopic `kafka:"min=v0,max=v2"`
}

type deleteRecordsResponseTopic struct {
	Topic      string                           `kafka:"min=v0,max=v2"`
	Partitions []deleteRecordsResponsePartition `kafka:"min=v0,max=v2"`
}

type deleteRecordsResponsePartition struct {
	Partition    int32 `kafka:"min=v0,max=v2"`
	LowWatermark int64 `kafka:"min=v0,max=v2"`
	ErrorCode    int16 `kafka:"min=v0,max=v2"`
}

func (r *deleteRecordsResponse) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

// deleteRecords makes the records of one partition before offset unreadable and returns the
// partition's new log start offset.
func deleteRecords(ctx context.Context, client *kafka.Client, topic string, partition int, offset int64) (int64, error) {
	request := &deleteRecordsRequest{
		Topics:    []deleteRecordsRequestTopic{{Topic: topic, Partitions: []deleteRecordsRequestPartition{{Partition: int32(partition), Offset: offset}}}},
		TimeoutMs: int32(client.Timeout.Milliseconds()),
	}
	message, err := client.Transport.RoundTrip(ctx, client.Addr, request)
	if err != nil {
		return 0, fmt.Errorf("delete records of %s/%d: %w", topic, partition, err)
	}
	response, ok := message.(*deleteRecordsResponse)
	if !ok {
		return 0, fmt.Errorf("delete records of %s/%d: answered with a %T", topic, partition, message)
	}
	for _, answered := range response.Topics {
		for _, part := range answered.Partitions {
			if answered.Topic != topic || int(part.Partition) != partition {
				continue
			}
			if part.ErrorCode != 0 {
				return 0, fmt.Errorf("delete records of %s/%d before %d: %w", topic, partition, offset, kafka.Error(part.ErrorCode))
			}
			return part.LowWatermark, nil
		}
	}
	return 0, fmt.Errorf("delete records of %s/%d: the broker did not answer for it", topic, partition)
}
