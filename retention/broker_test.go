package retention

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/stream"
)

type erasureList []cropstore.Erasure

func (l *erasureList) Erasures(context.Context) ([]cropstore.Erasure, error) { return *l, nil }

// scriptedBroker answers each purge with the next result and records what it was asked.
type scriptedBroker struct {
	results []stream.PurgeResult
	calls   []purgeCall
}

type purgeCall struct {
	before time.Time
	all    bool
}

func (b *scriptedBroker) Purge(_ context.Context, before time.Time, all bool) (stream.PurgeResult, error) {
	b.calls = append(b.calls, purgeCall{before, all})
	result := b.results[0]
	b.results = b.results[1:]
	return result, nil
}

// TestPurgeBrokerFollowsTheNewestErasure steps the purge through an erasure's life: nothing while
// its crops may still be arriving, the records from before it until the consumer groups have taken
// them all, then everything taken for a segment roll, then nothing; a newer erasure starts again.
func TestPurgeBrokerFollowsTheNewestErasure(t *testing.T) {
	first := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	second := first.Add(3 * time.Hour)
	record := &erasureList{}
	broker := &scriptedBroker{}
	var now time.Time
	options := PurgeOptions{Interval: 30 * time.Second, Settle: time.Minute, SegmentRoll: time.Hour,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	options.setDefaults()
	state := &brokerPurge{}
	steps := []struct {
		name   string
		at     time.Time
		erase  time.Time // a new erasure recorded before the step
		answer *stream.PurgeResult
		want   *purgeCall
	}{
		{name: "no erasure yet", at: first.Add(-time.Minute)},
		{name: "its crops may still be arriving", at: first.Add(30 * time.Second), erase: first},
		{name: "the embedder has not taken them", at: first.Add(61 * time.Second),
			answer: &stream.PurgeResult{Deleted: 40, Behind: []string{"reid-embedder"}}, want: &purgeCall{first.Add(time.Minute), false}},
		{name: "now it has", at: first.Add(2 * time.Minute),
			answer: &stream.PurgeResult{Deleted: 10, Complete: true}, want: &purgeCall{first.Add(time.Minute), false}},
		{name: "everything taken, while the segment rolls", at: first.Add(30 * time.Minute),
			answer: &stream.PurgeResult{Deleted: 500, Complete: true}, want: &purgeCall{first.Add(time.Minute), true}},
		{name: "the roll is past: done", at: first.Add(time.Minute + time.Hour + 31*time.Second)},
		{name: "a newer erasure starts again", at: second.Add(2 * time.Minute), erase: second,
			answer: &stream.PurgeResult{Complete: true}, want: &purgeCall{second.Add(time.Minute), false}},
	}
	for _, step := range steps {
		now = step.at
		if !step.erase.IsZero() {
			*record = append(*record, cropstore.Erasure{Time: step.erase})
		}
		calls := len(broker.calls)
		if step.answer != nil {
			broker.results = append(broker.results, *step.answer)
		}
		if err := state.step(context.Background(), record, broker, options); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		switch {
		case step.want == nil && len(broker.calls) != calls:
			t.Errorf("%s: purged %+v, want no purge", step.name, broker.calls[calls:])
		case step.want != nil && (len(broker.calls) != calls+1 || broker.calls[calls] != *step.want):
			t.Errorf("%s: purged %+v, want %+v", step.name, broker.calls[calls:], *step.want)
		}
	}
}
