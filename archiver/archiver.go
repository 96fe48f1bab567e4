// Package archiver is the stage that keeps every crop: it consumes the crops topic in its own
// consumer group and writes each record into the crop store, which the trainer learns from and the
// lookup page shows. Writes are by crop id, so a redelivered batch is harmless.
package archiver

import (
	"context"
	"errors"
	"fmt"
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
	store    Store
	archived atomic.Int64
}

// New returns an Archiver writing into store.
func New(store Store) *Archiver { return &Archiver{store: store} }

// Handle stores every record of batch. A record the store can never accept (an id that cannot
// name a file) is rejected to the dead-letter topic; any other failure fails the whole batch so
// the consumer retries it.
func (a *Archiver) Handle(ctx context.Context, batch []stream.Message) error {
	rejected := map[int]error{}
	for i, message := range batch {
		err := a.store.Put(ctx, message.Record)
		switch {
		case err == nil:
			a.archived.Add(1)
		case errors.Is(err, cropstore.ErrInvalidID):
			rejected[i] = fmt.Errorf("%w: %v", stream.ErrInvalidRecord, err)
		default:
			return fmt.Errorf("archiver: %w", err)
		}
	}
	if len(rejected) > 0 {
		return &stream.RejectedError{Records: rejected}
	}
	return nil
}

// Archived counts stored records (redeliveries included).
func (a *Archiver) Archived() int64 { return a.archived.Load() }
