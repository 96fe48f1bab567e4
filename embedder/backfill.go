package embedder

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/stream"
)

// A new model version makes vectors that cannot be compared with the old ones, so its gallery must
// hold every stored crop before lookups switch to it. The crops topic only keeps recent records;
// the crop store keeps them all, so a backfill reads the store, not the topic. It skips crops the
// gallery already holds (the live embedder writes new crops into the same gallery meanwhile, and a
// stopped backfill resumes where it was), and upserts by crop id, so running it twice is harmless.

// Store is the part of the crop store a backfill reads (cropstore.Local).
type Store interface {
	Walk(ctx context.Context, filter cropstore.Filter, fn func(cropstore.CropRecord) error) error
	Image(ctx context.Context, id string) ([]byte, error)
}

// Gallery says which crops a gallery already holds (index.Index's Get).
type Gallery interface {
	Get(ctx context.Context, version string, ids []string) ([]index.Item, error)
}

// BackfillStats counts a backfill's crops.
type BackfillStats struct {
	// Seen counts the stored crops walked; Present those the gallery already held.
	Seen, Present int64
	// Embedded counts crops embedded and upserted; Rejected those whose stored image could not
	// be decoded, and Missing those whose image was gone when read (deleted by retention).
	Embedded, Rejected, Missing int64
	Elapsed                     time.Duration
}

// BackfillOptions tunes a backfill.
type BackfillOptions struct {
	// BatchSize is crops per model call. Default 32.
	BatchSize int
	// Progress, when set, is called after every batch.
	Progress func(BackfillStats)
	// Share is the part of the time the backfill may work, from 0 (exclusive) to 1: after each
	// batch it rests so long that its batches take no more. A backfill beside a live pipeline
	// shares the model and the CPU with it; resting lets live crops through without waiting
	// behind backfill batches. 0 means 1: no rest.
	Share float64
}

// Backfill embeds every crop of store that the embedder's gallery lacks. It returns when the walk
// is done, or with the first model or index error (a rerun resumes). Crops that cannot be
// decoded are logged and counted, not fatal.
func (e *Embedder) Backfill(ctx context.Context, store Store, gallery Gallery, options BackfillOptions) (BackfillStats, error) {
	if options.BatchSize <= 0 {
		options.BatchSize = 32
	}
	if options.Share < 0 || options.Share > 1 {
		return BackfillStats{}, fmt.Errorf("embedder: backfill share %v: want more than 0 and at most 1", options.Share)
	}
	started := time.Now()
	version := e.Version()
	var stats BackfillStats
	pending := make([]cropstore.CropRecord, 0, options.BatchSize)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		defer func() { pending = pending[:0] }()
		ids := make([]string, len(pending))
		for i, record := range pending {
			ids[i] = record.ID
		}
		existing, err := gallery.Get(ctx, version, ids)
		if err != nil {
			return fmt.Errorf("embedder: backfill: gallery %s: %w", version, err)
		}
		present := make(map[string]bool, len(existing))
		for _, item := range existing {
			present[item.ID] = true
		}
		batch := make([]stream.Message, 0, len(pending))
		for _, record := range pending {
			if present[record.ID] {
				stats.Present++
				continue
			}
			image, err := store.Image(ctx, record.ID)
			if errors.Is(err, cropstore.ErrNotFound) {
				stats.Missing++
				continue
			}
			if err != nil {
				return fmt.Errorf("embedder: backfill: crop %s: %w", record.ID, err)
			}
			record.JPEG = image
			batch = append(batch, stream.Message{Record: record})
		}
		if len(batch) == 0 {
			return nil
		}
		batchStarted := time.Now()
		err = e.Handle(ctx, batch)
		var rejected *stream.RejectedError
		switch {
		case errors.As(err, &rejected):
			stats.Rejected += int64(len(rejected.Records))
			stats.Embedded += int64(len(batch) - len(rejected.Records))
		case err != nil:
			return fmt.Errorf("embedder: backfill: %w", err)
		default:
			stats.Embedded += int64(len(batch))
		}
		if options.Progress != nil {
			stats.Elapsed = time.Since(started)
			options.Progress(stats)
		}
		if options.Share > 0 && options.Share < 1 {
			return rest(ctx, time.Duration(float64(time.Since(batchStarted))*(1/options.Share-1)))
		}
		return nil
	}
	err := store.Walk(ctx, cropstore.Filter{}, func(record cropstore.CropRecord) error {
		stats.Seen++
		pending = append(pending, record)
		if len(pending) == options.BatchSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	stats.Elapsed = time.Since(started)
	return stats, err
}

// rest waits for d, or until ctx ends.
func rest(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
