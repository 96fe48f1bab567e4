package stream

// A broker keeps each crop for the topic's retention period (stream.topic_retention, a week by
// default) whether or not the stages have taken it: that is what lets a stopped stage resume and
// a new one start from the past. After an erasure request, though, the erased person's crops must
// not stay readable in the broker for a week. Purger deletes, with Kafka's DeleteRecords, the
// records that every consumer group of the topic has already consumed (the crop store has them,
// and the record of erasures keeps the erased ones from being stored again), so nothing any
// consumer still needs is lost. The broker then deletes each log segment once all of it is
// before the new start, which is why the crops topic rolls its segments hourly (CropsSegmentRoll).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// CropsSegmentRoll is how often the crops topic starts a new log segment file (segment.ms). A
// purge frees a segment's file only once every record in it is before the purge point, so this
// bounds how long purged crops stay on the broker's disk.
const CropsSegmentRoll = time.Hour

// Purger deletes a topic's consumed records from the broker.
type Purger struct {
	topic string
	admin *kafka.Client
}

// NewPurger purges topic's records.
func NewPurger(conn Connection, topic string) (*Purger, error) {
	if err := conn.validate(); err != nil {
		return nil, err
	}
	if topic == "" {
		return nil, errors.New("stream: a purge needs a topic")
	}
	admin := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: conn.transport(), Timeout: 10 * time.Second}
	return &Purger{topic: topic, admin: admin}, nil
}

// Close releases the purger's connections.
func (p *Purger) Close() { p.admin.Transport.(*kafka.Transport).CloseIdleConnections() }

// PurgeResult is what one purge did and found.
type PurgeResult struct {
	// Deleted counts the records made unreadable.
	Deleted int64
	// Complete says that no record written before the time asked about can be read any more.
	Complete bool
	// Behind names the consumer groups that have not consumed every record written before that
	// time; with no group at all on the topic, nothing is consumed and Behind is empty.
	Behind []string
}

// Purge deletes, in every partition, the records that every consumer group with offsets on the
// topic has consumed: those written before `before` only, or, with all, every one of them. A group
// that has consumed some partitions of the topic but not yet one holds that partition back.
func (p *Purger) Purge(ctx context.Context, before time.Time, all bool) (PurgeResult, error) {
	ranges, boundaries, consumed, behind, err := p.plan(ctx, before)
	if err != nil {
		return PurgeResult{}, err
	}
	result := PurgeResult{Complete: true, Behind: behind}
	for _, span := range ranges {
		target, ok := consumed[span.partition]
		if !ok {
			target = span.first
		}
		if !all {
			target = min(target, boundaries[span.partition])
		}
		if target = min(target, span.last); target > span.first {
			start, err := deleteRecords(ctx, p.admin, p.topic, span.partition, target)
			switch {
			case errors.Is(err, kafka.OffsetOutOfRange):
				// The target is below the end, so another purger (a second archiver) has moved
				// the start past it since it was read; the next purge sees where.
				result.Complete = false
				continue
			case err != nil:
				return result, fmt.Errorf("stream: purge: %w", err)
			}
			result.Deleted += start - span.first
			span.first = start
		}
		if span.first < boundaries[span.partition] {
			result.Complete = false
		}
	}
	return result, nil
}

// DeleteBefore deletes every record written before `before`, whether or not anything consumed it:
// what nobody consumes, the dead-letter topic, is deleted this way, at an operator's word (reid
// dlq purge). It returns how many records went.
func (p *Purger) DeleteBefore(ctx context.Context, before time.Time) (int64, error) {
	ranges, err := partitionRanges(ctx, p.admin, p.topic)
	if err != nil {
		return 0, fmt.Errorf("stream: delete from %s: %w", p.topic, err)
	}
	boundaries, err := p.firstAtOrAfter(ctx, ranges, before)
	if err != nil {
		return 0, fmt.Errorf("stream: delete from %s: %w", p.topic, err)
	}
	var deleted int64
	for _, span := range ranges {
		if target := boundaries[span.partition]; target > span.first {
			start, err := deleteRecords(ctx, p.admin, p.topic, span.partition, target)
			if err != nil {
				return deleted, fmt.Errorf("stream: %w", err)
			}
			deleted += start - span.first
		}
	}
	return deleted, nil
}

// Readable counts the records written before `before` that can still be read, and names the
// consumer groups that have not taken them all yet. It deletes nothing.
func (p *Purger) Readable(ctx context.Context, before time.Time) (int64, []string, error) {
	ranges, boundaries, _, behind, err := p.plan(ctx, before)
	if err != nil {
		return 0, nil, err
	}
	var readable int64
	for _, span := range ranges {
		readable += max(boundaries[span.partition]-span.first, 0)
	}
	return readable, behind, nil
}

// plan reads what a purge needs: the partitions' offsets, where the records written at or after
// before begin, how far every consumer group has come, and which groups are behind.
func (p *Purger) plan(ctx context.Context, before time.Time) (ranges []partitionRange, boundaries, consumed map[int]int64, behind []string, err error) {
	if ranges, err = partitionRanges(ctx, p.admin, p.topic); err == nil {
		if boundaries, err = p.firstAtOrAfter(ctx, ranges, before); err == nil {
			consumed, behind, err = p.consumed(ctx, ranges, boundaries)
		}
	}
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("stream: purge %s: %w", p.topic, err)
	}
	return ranges, boundaries, consumed, behind, nil
}

// firstAtOrAfter finds, per partition, the offset of the first record written at or after t: the
// end of the partition when every record is older.
func (p *Purger) firstAtOrAfter(ctx context.Context, ranges []partitionRange, t time.Time) (map[int]int64, error) {
	requests := make([]kafka.OffsetRequest, len(ranges))
	for i, span := range ranges {
		requests[i] = kafka.TimeOffsetOf(span.partition, t)
	}
	// Asked alone: kafka-go files an answer by its timestamp, and "no such record" comes back
	// with the timestamp that would file it as the end offset.
	listed, err := p.admin.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{p.topic: requests}})
	if err != nil {
		return nil, fmt.Errorf("offsets by time: %w", err)
	}
	boundaries := make(map[int]int64, len(ranges))
	for _, span := range ranges {
		boundaries[span.partition] = span.last
	}
	for _, offsets := range listed.Topics[p.topic] {
		if offsets.Error != nil {
			return nil, fmt.Errorf("partition %d offset by time: %w", offsets.Partition, offsets.Error)
		}
		for offset := range offsets.Offsets {
			if offset >= 0 {
				boundaries[offsets.Partition] = offset
			}
		}
	}
	return boundaries, nil
}

// consumed finds, per partition, the offset before which every consumer group of the topic is
// done, and the groups that are not done with the records before boundaries. Partitions no group
// has consumed are absent.
func (p *Purger) consumed(ctx context.Context, ranges []partitionRange, boundaries map[int]int64) (map[int]int64, []string, error) {
	groups, err := p.admin.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("list groups: %w", err)
	}
	if groups.Error != nil {
		return nil, nil, fmt.Errorf("list groups: %w", groups.Error)
	}
	partitions := make([]int, len(ranges))
	for i, span := range ranges {
		partitions[i] = span.partition
	}
	consumed := map[int]int64{}
	var behind []string
	for _, group := range groups.Groups {
		fetched, err := p.admin.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group.GroupID, Topics: map[string][]int{p.topic: partitions}})
		if err != nil {
			return nil, nil, fmt.Errorf("committed offsets of %s: %w", group.GroupID, err)
		}
		if errors.Is(fetched.Error, kafka.GroupIdNotFound) {
			continue
		}
		if fetched.Error != nil {
			return nil, nil, fmt.Errorf("committed offsets of %s: %w", group.GroupID, fetched.Error)
		}
		committed := map[int]int64{}
		for _, partition := range fetched.Topics[p.topic] {
			if partition.Error != nil {
				return nil, nil, fmt.Errorf("committed offset of %s on partition %d: %w", group.GroupID, partition.Partition, partition.Error)
			}
			if partition.CommittedOffset >= 0 {
				committed[partition.Partition] = partition.CommittedOffset
			}
		}
		if len(committed) == 0 {
			continue // not a consumer of this topic
		}
		lagging := false
		for _, span := range ranges {
			done := span.first // nothing committed here yet: the group will read from the start
			if offset, ok := committed[span.partition]; ok {
				done = max(offset, span.first)
			}
			if current, ok := consumed[span.partition]; !ok || done < current {
				consumed[span.partition] = done
			}
			lagging = lagging || done < boundaries[span.partition]
		}
		if lagging {
			behind = append(behind, group.GroupID)
		}
	}
	slices.Sort(behind)
	return consumed, behind, nil
}
