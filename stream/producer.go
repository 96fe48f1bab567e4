package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
)

// ProducerOptions configures a Producer. Zero fields take the default named in their comment.
type ProducerOptions struct {
	// Topic receives the records. Required.
	Topic string
	// Buffer is how many encoded records may wait in memory; when it is full Put blocks
	// (backpressure) unless DropWhenFull. Default 1024.
	Buffer int
	// DropWhenFull makes Put drop the record instead of blocking when the buffer is full. Each
	// drop is counted (ProducerStats.Dropped) and logged with the crop id.
	DropWhenFull bool
	// BatchSize is the most records sent in one write (of one lane). Default 64.
	BatchSize int
	// Lanes is how many writes may be in flight at once. A record's lane is picked by the Murmur2
	// hash of its camera id, the hash that picks its partition, so one camera's records always
	// share a lane and keep their order under retries; with as many lanes as the topic has
	// partitions, each partition has one write in flight. Default 4 (reid's default partition
	// count); ProducerOptionsFrom takes stream.partitions.
	Lanes int
	// BatchTimeout is the longest a record waits for its batch to fill. Default 50ms.
	BatchTimeout time.Duration
	// MaxAttempts is how many times kafka-go tries one write before the producer backs off and
	// tries the batch again (it never gives up while open). Default 5.
	MaxAttempts int
	// RetryBackoffMax caps the producer's own backoff between failed batches. Default 5s.
	RetryBackoffMax time.Duration
	// Logger receives drops, write failures and retries; nil uses slog.Default.
	Logger *slog.Logger
}

// ProducerOptionsFrom takes the producer settings of the stream config.
func ProducerOptionsFrom(cfg config.Stream) ProducerOptions {
	return ProducerOptions{
		Topic:        cfg.CropsTopic,
		Buffer:       cfg.Buffer,
		DropWhenFull: cfg.DropWhenFull,
		BatchSize:    cfg.BatchSize,
		BatchTimeout: cfg.BatchTimeout,
		Lanes:        cfg.Partitions,
	}
}

func (o *ProducerOptions) setDefaults() error {
	if o.Topic == "" {
		return errors.New("stream: producer needs a topic")
	}
	if o.Buffer < 0 || o.BatchSize < 0 || o.BatchTimeout < 0 || o.Lanes < 0 || o.MaxAttempts < 0 || o.RetryBackoffMax < 0 {
		return errors.New("stream: producer options must not be negative")
	}
	if o.Buffer == 0 {
		o.Buffer = 1024
	}
	if o.BatchSize == 0 {
		o.BatchSize = 64
	}
	if o.Lanes == 0 {
		o.Lanes = 4
	}
	if o.BatchTimeout == 0 {
		o.BatchTimeout = 50 * time.Millisecond
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBackoffMax == 0 {
		o.RetryBackoffMax = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// ProducerStats is a snapshot of a Producer's counters.
type ProducerStats struct {
	// Produced records were acknowledged by all in-sync replicas.
	Produced int64
	// Dropped records were refused by Put because the buffer was full (DropWhenFull only).
	Dropped int64
	// Errors counts failed write attempts (each retried) plus records abandoned at Close.
	Errors int64
	// Abandoned records were still unwritten when Close's context ended; each was logged.
	Abandoned int64
	// Buffered records are accepted by Put but not yet acknowledged.
	Buffered int64
}

// ErrClosed is returned by Put after Close has begun.
var ErrClosed = errors.New("stream: producer closed")

// Producer writes CropRecords to a topic, keyed by camera id, with acks from all in-sync replicas.
// Put hands a record to a bounded buffer shared by the producer's lanes; each lane is one
// goroutine that batches its records into the kafka-go Writer and retries a failed batch until it
// succeeds before it writes the next, so records of one camera (always in one lane) keep their
// order and nothing is lost while the producer is open. It is safe for concurrent use and
// implements the ingest crop sink.
type Producer struct {
	options ProducerOptions
	writer  *kafka.Writer
	lanes   []lane
	// slots holds a token for each buffered record not yet taken into a batch: Put acquires one
	// before it queues a record, the lane releases it when it takes the record, so the lanes
	// together never hold more than Buffer records waiting.
	slots    chan struct{}
	laneHash kafka.Murmur2Balancer
	laneIDs  []int
	done     chan struct{}

	// closeMu keeps Close from closing the lanes' queues while a Put is sending on one;
	// closingCh wakes Puts blocked on a full buffer so Close can take the lock.
	closeMu   sync.RWMutex
	closing   bool
	closingCh chan struct{}
	closeOnce sync.Once
	stop      context.CancelFunc // ends retries once Close's ctx has ended

	produced, dropped, errorCount, abandoned atomic.Int64
	accepted, finished                       atomic.Int64

	progressMu sync.Mutex
	progress   chan struct{} // closed and replaced whenever finished grows
}

// lane is one ordered stream of writes. Its queue can take the whole buffer (one busy camera);
// the producer's slots keep the total within it.
type lane struct {
	queue chan kafka.Message
	flush chan struct{}
}

// NewProducer starts a producer; call Close to drain it.
func NewProducer(conn Connection, options ProducerOptions) (*Producer, error) {
	if err := conn.validate(); err != nil {
		return nil, err
	}
	if err := options.setDefaults(); err != nil {
		return nil, err
	}
	writer := &kafka.Writer{
		Addr:  kafka.TCP(conn.Brokers...),
		Topic: options.Topic,
		// Murmur2 is the Java client's default partitioner, so other producers keyed by camera
		// id land on the same partition.
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		MaxAttempts:  options.MaxAttempts,
		BatchSize:    options.BatchSize,
		BatchBytes:   MaxRecordBytes + 64<<10,
		// The producer does its own batching; the Writer's per-partition timer would only add
		// latency to each of our batches, which it splits across partitions.
		BatchTimeout: time.Millisecond,
		Transport:    conn.transport(),
	}
	ctx, stop := context.WithCancel(context.Background())
	producer := &Producer{
		options: options,
		writer:  writer,
		lanes:   make([]lane, options.Lanes),
		slots:   make(chan struct{}, options.Buffer),
		// Consistent: keys are never nil here, and it keeps Balance free of shared state.
		laneHash:  kafka.Murmur2Balancer{Consistent: true},
		laneIDs:   make([]int, options.Lanes),
		done:      make(chan struct{}),
		closingCh: make(chan struct{}),
		stop:      stop,
		progress:  make(chan struct{}),
	}
	for i := range producer.lanes {
		producer.lanes[i] = lane{queue: make(chan kafka.Message, options.Buffer), flush: make(chan struct{}, 1)}
		producer.laneIDs[i] = i
	}
	go producer.run(ctx)
	return producer, nil
}

// Put encodes record and queues it. When the buffer is full it blocks until there is room or ctx
// ends (backpressure), or with DropWhenFull counts, logs and drops the record and returns nil.
// A record that cannot be encoded returns an error wrapping ErrInvalidRecord at once.
func (p *Producer) Put(ctx context.Context, record cropstore.CropRecord) error {
	value, err := Encode(record)
	if err != nil {
		return err
	}
	// The record's broker timestamp is when it was accepted, not when a batch happened to be
	// written: a purge after an erasure finds the records from before the erasure by it.
	message := kafka.Message{Key: []byte(record.Camera), Value: value, Time: time.Now()}
	queue := p.lanes[p.laneHash.Balance(message, p.laneIDs...)].queue
	p.closeMu.RLock()
	defer p.closeMu.RUnlock()
	if p.closing {
		return ErrClosed
	}
	if p.options.DropWhenFull {
		select {
		case p.slots <- struct{}{}:
		default:
			total := p.dropped.Add(1)
			p.options.Logger.Warn("producer buffer full, crop dropped", "id", record.ID, "camera", record.Camera, "dropped_total", total)
			return nil
		}
	} else {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("stream: put %s: %w", record.ID, ctx.Err())
		case <-p.closingCh:
			return ErrClosed
		}
	}
	// Never blocks: the queue has room for the whole buffer and this record holds a slot.
	queue <- message
	p.accepted.Add(1)
	return nil
}

// Flush waits until every record Put before the call is acknowledged (or abandoned by Close).
func (p *Producer) Flush(ctx context.Context) error {
	target := p.accepted.Load()
	for {
		p.progressMu.Lock()
		progress := p.progress
		p.progressMu.Unlock()
		if p.finished.Load() >= target {
			return nil
		}
		for i := range p.lanes {
			select {
			case p.lanes[i].flush <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream: flush: %w", ctx.Err())
		case <-progress:
		case <-p.done:
			if p.finished.Load() >= target {
				return nil
			}
			return ErrClosed
		}
	}
}

// Close stops accepting records and drains the buffer. If ctx ends first, the records still
// unwritten are abandoned: each is counted and logged, and Close returns an error.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		close(p.closingCh)
		p.closeMu.Lock()
		p.closing = true
		for i := range p.lanes {
			close(p.lanes[i].queue)
		}
		p.closeMu.Unlock()
	})
	var err error
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop()
		<-p.done
		err = fmt.Errorf("stream: producer close: %w", ctx.Err())
	}
	if closeErr := p.writer.Close(); closeErr != nil && err == nil {
		err = fmt.Errorf("stream: producer close: %w", closeErr)
	}
	if abandoned := p.abandoned.Load(); abandoned > 0 && err == nil {
		err = fmt.Errorf("stream: producer close: %d records not written", abandoned)
	}
	return err
}

// Stats returns the current counters.
func (p *Producer) Stats() ProducerStats {
	return ProducerStats{
		Produced:  p.produced.Load(),
		Dropped:   p.dropped.Load(),
		Errors:    p.errorCount.Load(),
		Abandoned: p.abandoned.Load(),
		// accepted is counted just after the send, so the writer can finish a record first.
		Buffered: max(0, p.accepted.Load()-p.finished.Load()),
	}
}

// run owns the lanes: it returns when every lane has drained its queue, or given up after ctx
// ended (Close gave up).
func (p *Producer) run(ctx context.Context) {
	defer close(p.done)
	var lanes sync.WaitGroup
	for i := range p.lanes {
		lanes.Go(func() { p.runLane(ctx, &p.lanes[i]) })
	}
	lanes.Wait()
}

// runLane batches one lane's queue and writes each batch until it succeeds.
func (p *Producer) runLane(ctx context.Context, lane *lane) {
	batch := make([]kafka.Message, 0, p.options.BatchSize)
	take := func(message kafka.Message) {
		<-p.slots
		batch = append(batch, message)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	open := true
	for open {
		// Block for the first record of a batch, then fill it until full, timed out or flushed.
		message, ok := <-lane.queue
		if !ok {
			break
		}
		batch = batch[:0]
		take(message)
		timer.Reset(p.options.BatchTimeout)
	fill:
		for len(batch) < p.options.BatchSize {
			select {
			case message, ok := <-lane.queue:
				if !ok {
					open = false
					break fill
				}
				take(message)
			case <-timer.C:
				break fill
			case <-lane.flush:
				// Take what is already queued without waiting for more.
				for len(batch) < p.options.BatchSize {
					select {
					case message, ok := <-lane.queue:
						if !ok {
							open = false
							break fill
						}
						take(message)
						continue
					default:
					}
					break
				}
				break fill
			}
		}
		timer.Stop()
		if unwritten := p.write(ctx, batch); len(unwritten) > 0 {
			// Close gave up waiting: account for every record still held, one log line each.
			p.abandon(unwritten)
			for message := range lane.queue {
				<-p.slots
				p.abandon([]kafka.Message{message})
			}
			return
		}
	}
}

// write sends batch, retrying the messages that failed with capped backoff until all succeed.
// It returns the messages still unwritten, which is none unless ctx ended first.
func (p *Producer) write(ctx context.Context, batch []kafka.Message) []kafka.Message {
	retry := newBackoff(50*time.Millisecond, p.options.RetryBackoffMax)
	pending := batch
	for {
		err := p.writer.WriteMessages(ctx, pending...)
		if err == nil {
			p.finish(int64(len(pending)), true)
			return nil
		}
		p.errorCount.Add(1)
		var writeErrors kafka.WriteErrors
		if errors.As(err, &writeErrors) && len(writeErrors) == len(pending) {
			// Keep only the failed messages, in their order: per partition a batch fails or
			// succeeds as a whole, so per-camera order holds.
			failed := pending[:0:0]
			for i, messageErr := range writeErrors {
				if messageErr != nil {
					failed = append(failed, pending[i])
				}
			}
			p.finish(int64(len(pending)-len(failed)), true)
			pending = failed
		}
		if ctx.Err() != nil {
			return pending
		}
		p.options.Logger.Warn("producer write failed, retrying", "topic", p.options.Topic, "records", len(pending), "err", err)
		if retry.wait(ctx) != nil {
			return pending
		}
	}
}

func (p *Producer) abandon(messages []kafka.Message) {
	for _, message := range messages {
		p.options.Logger.Error("producer closed before write, crop not sent", "camera", string(message.Key), "id", idOf(message.Value))
	}
	n := int64(len(messages))
	p.abandoned.Add(n)
	p.errorCount.Add(n)
	p.finish(n, false)
}

func (p *Producer) finish(n int64, produced bool) {
	if n == 0 {
		return
	}
	if produced {
		p.produced.Add(n)
	}
	p.finished.Add(n)
	p.progressMu.Lock()
	close(p.progress)
	p.progress = make(chan struct{})
	p.progressMu.Unlock()
}

// idOf recovers a crop id for a log line; it never fails.
func idOf(value []byte) string {
	record, err := Decode(value)
	if err != nil {
		return "?"
	}
	return record.ID
}
