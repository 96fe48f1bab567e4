// Package archiver is the stage that keeps every crop: it consumes the crops topic in its own
// consumer group and writes each record into the crop store, which the trainer learns from and the
// lookup page shows. Writes are by crop id, so a redelivered batch is harmless.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/stream"
)

// Store is the part of the crop store the archiver writes to.
type Store interface {
	Put(ctx context.Context, record cropstore.CropRecord) error
}

// Archiver writes batches into a Store. It implements stream.Handler through Handle.
type Archiver struct {
	store Store
	// writers is how many records of a batch are written at once.
	writers  int
	archived atomic.Int64
	erased   atomic.Int64
}

// defaultWriters: each local write waits on an fsync, and an object store put on a round trip; writing a batch's records side by side overlaps those waits. Eight gave
// 1.3-2.2x one writer's rate on the test VM's disk (BenchmarkArchive, docs/BENCHMARKS.md).
const defaultWriters = 8

// New returns an Archiver writing into store, which must take concurrent Puts.
func New(store Store) *Archiver { return &Archiver{store: store, writers: defaultWriters} }

// Handle stores every record of batch. A record the store can never accept (an id that cannot
// name a file, an image that is not a JPEG) is rejected to the dead-letter topic; any other failure fails the whole batch so
// the consumer retries it. Records are written side by side: they are keyed by id, so their order
// does not matter, and a batch counts as stored only once every write has returned.
func (a *Archiver) Handle(ctx context.Context, batch []stream.Message) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		rejected = map[int]error{}
		failure  error
	)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(a.writers, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := a.store.Put(ctx, batch[i].Record)
				switch {
				case err == nil:
					a.archived.Add(1)
				case errors.Is(err, cropstore.ErrErased):
					// Erased on request (a track still in view, a replayed dead letter): dropping
					// it is the point, so the record is done with.
					a.erased.Add(1)
				case errors.Is(err, cropstore.ErrInvalidID), errors.Is(err, cropstore.ErrInvalidImage):
					mu.Lock()
					rejected[i] = fmt.Errorf("%w: %v", stream.ErrInvalidRecord, err)
					mu.Unlock()
				default:
					mu.Lock()
					if failure == nil {
						failure = fmt.Errorf("archiver: %w", err)
					}
					mu.Unlock()
					cancel() // the batch will be retried whole; stop writing the rest
				}
			}
		}()
	}
	for i := range batch {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if failure != nil {
		return failure
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(rejected) > 0 {
		return &stream.RejectedError{Records: rejected}
	}
	return nil
}

// Archived counts stored records (redeliveries included).
func (a *Archiver) Archived() int64 { return a.archived.Load() }

// Erased counts records the store refused because they were erased on request.
func (a *Archiver) Erased() int64 { return a.erased.Load() }
