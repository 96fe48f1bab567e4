// Package embedder is the stage between the crops topic and the index: it decodes each batch of
// crop JPEGs, runs the re-id network over them and upserts the normalised vectors, with their
// metadata, into the gallery of the model version that made them.
//
// It is a stream.Handler: the consumer commits a batch only after Handle returned, so an upsert
// that fails is retried, and a crop that can never be embedded (a broken JPEG) is rejected to the
// dead-letter topic instead of blocking the partition. Upserts are by crop id, so a redelivered
// batch lands once.
package embedder

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/stream"
)

// Model turns decoded crops into L2-normalised vectors of Dim values, in input order.
// *torch.Model implements it.
type Model interface {
	Embed(ctx context.Context, images []image.Image) ([][]float32, error)
	Dim() int
}

// Index is the part of index.Index the embedder writes to.
type Index interface {
	CreateVersion(ctx context.Context, version string, dim int) error
	Upsert(ctx context.Context, version string, items []index.Item) error
}

// Erasures says whether a crop was erased on request, or is of an erased track: such a crop must
// not be indexed again. The crop store (cropstore.Local, cropstore.S3) keeps that record.
type Erasures interface {
	Erased(ctx context.Context, record cropstore.CropRecord) (bool, error)
}

// Options configures an Embedder.
type Options struct {
	// Model makes the vectors; Version names it, and is the index gallery written to.
	Model   Model
	Version string
	Index   Index
	// Erasures, when set, drops erased crops instead of indexing them.
	Erasures Erasures
	// DecodeWorkers decode a batch's JPEGs in parallel once Handle needs them. Default: the
	// number of CPUs.
	DecodeWorkers int
	// PrepareWorkers decode the next batch's JPEGs while the model runs the current one (see
	// Prepare). Default 1: where the model's threads fill the cores, more would slow the model by
	// more than they save.
	PrepareWorkers int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Stats is a snapshot of an Embedder's counters.
type Stats struct {
	// Embedded counts crops whose vectors were upserted (redeliveries included).
	Embedded int64
	// Rejected counts crops sent to the dead-letter topic because they could not be decoded.
	Rejected int64
	// Erased counts crops dropped because they were erased on request (Options.Erasures).
	Erased int64
	// Batches counts handled batches; DecodeTime, ModelTime and UpsertTime are their summed
	// durations, DecodeTime counting only the decoding Prepare had not done yet.
	Batches int64
	// DecodedAhead counts crops Prepare had decoded by the time Handle needed them.
	DecodedAhead int64
	DecodeTime   time.Duration
	ModelTime    time.Duration
	UpsertTime   time.Duration
	// LastLatency is frame-to-searchable time of the last crop of the last batch: from the
	// record's frame time to its upsert returning. It means what it says when ingest stamps
	// frames with wall-clock time (ingest.timestamps: wallclock).
	LastLatency time.Duration
}

// Embedder is safe for use by one consumer at a time; Stats, Version and SwitchModel may be called
// concurrently.
type Embedder struct {
	options Options
	// handling is held for a whole Handle, so that SwitchModel returns only once no batch is
	// being embedded by the model it replaced; target is read under it.
	handling sync.Mutex
	target   atomic.Pointer[target]
	stats    struct {
		embedded, rejected, erased, batches, decodedAhead atomic.Int64
		decodeNanos, modelNanos, upsertNanos, latency     atomic.Int64
	}
	// observe, when set, receives each handled batch's frame-to-searchable latencies.
	observe func([]time.Duration)
}

// New checks options and makes sure the model version's gallery exists.
func New(ctx context.Context, options Options) (*Embedder, error) {
	if options.Model == nil || options.Index == nil || options.Version == "" {
		return nil, errors.New("embedder: needs a model, its version and an index")
	}
	if options.DecodeWorkers <= 0 {
		options.DecodeWorkers = runtime.NumCPU()
	}
	if options.PrepareWorkers <= 0 {
		options.PrepareWorkers = 1
	}
	if options.Logger == nil {
		options.Logger = slog.Default()
	}
	if err := options.Index.CreateVersion(ctx, options.Version, options.Model.Dim()); err != nil {
		return nil, fmt.Errorf("embedder: gallery for model %s: %w", options.Version, err)
	}
	e := &Embedder{options: options}
	e.target.Store(&target{model: options.Model, version: options.Version})
	return e, nil
}

// target is the model the embedder runs and the gallery its vectors go to.
type target struct {
	model   Model
	version string
}

// Version is the model version, and gallery, the embedder writes now.
func (e *Embedder) Version() string { return e.target.Load().version }

// SwitchModel makes batches handled from now on go through model into version's gallery, which
// it creates. It returns once the batch being handled, if any, is done: after that, nothing uses
// the previous model, and every crop the embedder has taken from the topic since is written to
// version's gallery.
func (e *Embedder) SwitchModel(ctx context.Context, model Model, version string) error {
	if model == nil || version == "" {
		return errors.New("embedder: switch needs a model and its version")
	}
	if err := e.options.Index.CreateVersion(ctx, version, model.Dim()); err != nil {
		return fmt.Errorf("embedder: gallery for model %s: %w", version, err)
	}
	e.handling.Lock()
	defer e.handling.Unlock()
	e.target.Store(&target{model: model, version: version})
	return nil
}

// ObserveLatency registers fn to receive, after each batch, the time from each crop's frame time
// to its vector being searchable. Call before the consumer starts.
func (e *Embedder) ObserveLatency(fn func([]time.Duration)) { e.observe = fn }

// Prepare starts decoding a batch's JPEGs; Handle finishes it. It is the consumer's
// stream.ConsumerOptions.Prepare: the consumer calls it on the next batch while Handle still runs
// the model on the current one.
func (e *Embedder) Prepare(batch []stream.Message) {
	if len(batch) == 0 {
		return
	}
	job := newDecodeJob(batch)
	for i := range batch {
		batch[i].Prepared = job
	}
	job.start(e.options.PrepareWorkers)
}

// Handle embeds and upserts one batch. It implements stream.Handler.
func (e *Embedder) Handle(ctx context.Context, batch []stream.Message) error {
	if len(batch) == 0 {
		return nil
	}
	e.handling.Lock()
	defer e.handling.Unlock()
	using := e.target.Load()
	started := time.Now()
	job := jobFor(batch)
	if !job.seen { // a retried batch was decoded by its first try, not ahead
		job.seen = true
		e.stats.decodedAhead.Add(int64(job.ready()))
	}
	images, rejected := job.finish(e.options.DecodeWorkers)
	decoded := time.Now()
	items := make([]index.Item, 0, len(batch))
	keep := make([]int, 0, len(batch))
	pictures := make([]image.Image, 0, len(batch))
	all := make([]int, len(batch))
	for i := range all {
		all[i] = i
	}
	erased, err := e.erased(ctx, batch, all)
	if err != nil {
		return err
	}
	for i := range erased {
		delete(rejected, i) // an erased crop goes nowhere, not even to the dead-letter topic
	}
	for i := range batch {
		if _, bad := rejected[i]; !bad && !erased[i] {
			keep = append(keep, i)
			pictures = append(pictures, images[i])
		}
	}
	if len(pictures) > 0 {
		vectors, err := using.model.Embed(ctx, pictures)
		if err != nil {
			return fmt.Errorf("embedder: model: %w", err)
		}
		if len(vectors) != len(pictures) {
			return fmt.Errorf("embedder: model returned %d vectors for %d crops", len(vectors), len(pictures))
		}
		for j, i := range keep {
			record := batch[i].Record
			items = append(items, index.Item{
				ID:     record.ID,
				Vector: vectors[j],
				Metadata: index.Metadata{
					Camera: record.Camera,
					Time:   record.Time,
					Track:  record.Track,
					Frame:  record.Frame,
					Box:    [4]int32{int32(record.Box.X), int32(record.Box.Y), int32(record.Box.Width), int32(record.Box.Height)},
					Model:  using.version,
				},
			})
		}
	}
	embedded := time.Now()
	// An erasure recorded while the model ran must not find these vectors indexed after it
	// looked: checked again, just before they are written.
	erasedNow, err := e.erased(ctx, batch, keep)
	if err != nil {
		return err
	}
	if len(erasedNow) > 0 {
		keptItems, kept := items[:0], keep[:0]
		for j, i := range keep {
			if erasedNow[i] {
				erased[i] = true
				continue
			}
			keptItems, kept = append(keptItems, items[j]), append(kept, i)
		}
		items, keep = keptItems, kept
	}
	if len(items) > 0 {
		if err := e.options.Index.Upsert(ctx, using.version, items); err != nil {
			return fmt.Errorf("embedder: upsert: %w", err)
		}
	}
	done := time.Now()
	e.stats.erased.Add(int64(len(erased)))
	e.record(batch, keep, len(rejected), started, decoded, embedded, done)
	if len(rejected) > 0 {
		for i, err := range rejected {
			e.options.Logger.Warn("crop rejected", "id", batch[i].Record.ID, "camera", batch[i].Record.Camera, "err", err)
		}
		return &stream.RejectedError{Records: rejected}
	}
	return nil
}

// erased returns which records of batch, of those at positions, were erased on request.
func (e *Embedder) erased(ctx context.Context, batch []stream.Message, positions []int) (map[int]bool, error) {
	erased := map[int]bool{}
	if e.options.Erasures == nil {
		return erased, nil
	}
	for _, i := range positions {
		gone, err := e.options.Erasures.Erased(ctx, batch[i].Record)
		if err != nil {
			return nil, fmt.Errorf("embedder: %w", err)
		}
		if gone {
			erased[i] = true
		}
	}
	return erased, nil
}

func (e *Embedder) record(batch []stream.Message, keep []int, rejected int, started, decoded, embedded, done time.Time) {
	e.stats.batches.Add(1)
	e.stats.embedded.Add(int64(len(keep)))
	e.stats.rejected.Add(int64(rejected))
	e.stats.decodeNanos.Add(int64(decoded.Sub(started)))
	e.stats.modelNanos.Add(int64(embedded.Sub(decoded)))
	e.stats.upsertNanos.Add(int64(done.Sub(embedded)))
	latencies := make([]time.Duration, 0, len(keep))
	for _, i := range keep {
		if frameTime := batch[i].Record.Time; !frameTime.IsZero() {
			latencies = append(latencies, done.Sub(frameTime))
		}
	}
	if len(latencies) > 0 {
		e.stats.latency.Store(int64(latencies[len(latencies)-1]))
		if e.observe != nil {
			e.observe(latencies)
		}
	}
}

// Stats returns a snapshot of the counters.
func (e *Embedder) Stats() Stats {
	return Stats{
		Embedded:     e.stats.embedded.Load(),
		Rejected:     e.stats.rejected.Load(),
		Erased:       e.stats.erased.Load(),
		Batches:      e.stats.batches.Load(),
		DecodedAhead: e.stats.decodedAhead.Load(),
		DecodeTime:   time.Duration(e.stats.decodeNanos.Load()),
		ModelTime:    time.Duration(e.stats.modelNanos.Load()),
		UpsertTime:   time.Duration(e.stats.upsertNanos.Load()),
		LastLatency:  time.Duration(e.stats.latency.Load()),
	}
}
