package retention

// An erasure deletes a person's crops from the crop store and the galleries at once, but the
// broker still holds the crops topic's copies of them until the topic's retention. After each
// erasure, PurgeBroker deletes from the broker every record from before the erasure that all the
// topic's consumer groups have taken (stream.Purger), as soon as they have; for the hour after
// that, while the broker's segment holding the last of them rolls, it goes on deleting whatever
// they have taken, so that segment's file goes too.

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/stream"
)

// PurgeSettle is how long after an erasure its purge waits by default: crops of its tracks may
// still reach the broker until every stage has read the record (cropstore.ErasureRefresh), and
// hosts' clocks differ.
const PurgeSettle = time.Minute

// BrokerPurger deletes the crops topic's consumed records: *stream.Purger.
type BrokerPurger interface {
	Purge(ctx context.Context, before time.Time, all bool) (stream.PurgeResult, error)
}

// ErasureRecord is the crop store's record of erasures.
type ErasureRecord interface {
	Erasures(ctx context.Context) ([]cropstore.Erasure, error)
}

// PurgeOptions configures PurgeBroker.
type PurgeOptions struct {
	// Interval is how often it looks; default 30s.
	Interval time.Duration
	// Settle is how long after an erasure crops of its tracks may still reach the broker: the
	// stages read the record every cropstore.ErasureRefresh, and hosts' clocks differ. Default 1m.
	Settle time.Duration
	// SegmentRoll is the crops topic's segment.ms; default stream.CropsSegmentRoll.
	SegmentRoll time.Duration
	// Now defaults to time.Now; Logger to slog.Default().
	Now    func() time.Time
	Logger *slog.Logger
	// Purged, when set, is told each purge's result (metrics).
	Purged func(stream.PurgeResult)
}

func (o *PurgeOptions) setDefaults() {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = PurgeSettle
	}
	if o.SegmentRoll <= 0 {
		o.SegmentRoll = stream.CropsSegmentRoll
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// PurgeBroker purges the broker after each erasure in record, now and every options.Interval,
// until ctx ends. Failures are logged and retried: purging must not stop the pipeline.
func PurgeBroker(ctx context.Context, record ErasureRecord, broker BrokerPurger, options PurgeOptions) {
	options.setDefaults()
	state := &brokerPurge{}
	ticker := time.NewTicker(options.Interval)
	defer ticker.Stop()
	for {
		if err := state.step(ctx, record, broker, options); err != nil && ctx.Err() == nil {
			options.Logger.Error("erasure: purging the broker failed; retrying", "err", err, "interval", options.Interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// brokerPurge follows the newest erasure's purge. An older erasure's records are older still, so
// the newest one's purge covers them.
type brokerPurge struct {
	erasure time.Time
	// complete is set once no record from before the erasure (and its settling) is readable.
	complete bool
	// behind is the consumer groups last reported as holding the purge back.
	behind string
}

func (p *brokerPurge) step(ctx context.Context, record ErasureRecord, broker BrokerPurger, options PurgeOptions) error {
	erasures, err := record.Erasures(ctx)
	if err != nil {
		return err
	}
	for _, erasure := range erasures {
		if erasure.Time.After(p.erasure) {
			*p = brokerPurge{erasure: erasure.Time}
		}
	}
	if p.erasure.IsZero() {
		return nil
	}
	before, now := p.erasure.Add(options.Settle), options.Now()
	switch {
	case now.Before(before):
		return nil // crops of the erased tracks may still be on their way to the broker
	case p.complete && now.After(before.Add(options.SegmentRoll+options.Interval)):
		return nil // done: the segment holding the last of them has rolled and been purged
	}
	result, err := broker.Purge(ctx, before, p.complete)
	if err != nil {
		return err
	}
	if options.Purged != nil {
		options.Purged(result)
	}
	if result.Deleted > 0 {
		options.Logger.Info("erasure: deleted consumed crops from the broker", "records", result.Deleted, "erasure", p.erasure)
	}
	switch {
	case result.Complete && !p.complete:
		p.complete = true
		options.Logger.Info("erasure: the broker serves no crop from before the erasure; their files go within the segment roll", "erasure", p.erasure, "segment_roll", options.SegmentRoll)
	case !result.Complete:
		behind := strings.Join(result.Behind, ", ")
		if len(result.Behind) == 0 {
			behind = "no consumer group has taken them yet"
		}
		if behind != p.behind {
			options.Logger.Info("erasure: crops from before the erasure stay in the broker until these consumer groups have taken them", "erasure", p.erasure, "groups", behind)
		}
		p.behind = behind
	}
	return nil
}
