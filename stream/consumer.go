package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/cropstore"
)

// Message is one decoded record with where it came from.
type Message struct {
	Record    cropstore.CropRecord
	Topic     string
	Partition int
	Offset    int64
	// Time is the record's Kafka timestamp (when it was produced).
	Time time.Time
	// Prepared is whatever ConsumerOptions.Prepare attached to the record while the batch before
	// it was being handled (the embedder's decode in progress); nil without a Prepare.
	Prepared any
}

// Handler makes a batch durable (writes it to the index, the crop store, ...). Returning nil means
// every record is durable and the batch may be committed. Returning a *RejectedError means the
// records it lists can never be processed (a broken image, say) and the rest are durable: the
// listed ones go to the DLQ, then the batch is committed. Any other error means nothing may be
// assumed durable: the consumer retries the same batch with backoff and never skips it, so the
// handler must be idempotent (by crop id). The handler must not keep the records' JPEG slices
// after it returns.
type Handler func(ctx context.Context, batch []Message) error

// RejectedError lists the records of a batch that a Handler refuses for good, by index in the
// batch, with why. Wrap ErrBadJPEG (or another sentinel Reason knows) to get a specific DLQ
// reason; any other error is recorded as "rejected".
type RejectedError struct {
	Records map[int]error
}

func (e *RejectedError) Error() string {
	indexes := make([]int, 0, len(e.Records))
	for index := range e.Records {
		indexes = append(indexes, index)
	}
	sort.Ints(indexes)
	parts := make([]string, 0, len(indexes))
	for _, index := range indexes {
		parts = append(parts, fmt.Sprintf("record %d: %v", index, e.Records[index]))
	}
	return "stream: rejected " + strings.Join(parts, "; ")
}

// ConsumerOptions configures a Consumer. Zero fields take the default named in their comment.
type ConsumerOptions struct {
	// Topic is read; Group is the consumer-group id; DLQTopic receives poison records. Required.
	Topic    string
	Group    string
	DLQTopic string
	// BatchSize is the most records handed to the handler at once. Default 32.
	BatchSize int
	// MaxWait is the longest the first record of a batch waits for more. Default 100ms.
	MaxWait time.Duration
	// ValidateJPEG sends records whose image fails ValidateJPEG to the DLQ before the handler
	// sees them.
	ValidateJPEG bool
	// Prepare, when set, is given each batch as soon as it is fetched, while the handler is still
	// busy with the batch before it, so that work needing neither order nor durability (decoding
	// images) overlaps the handler's instead of adding to it. It must return promptly: it starts
	// that work and may record it in each Message's Prepared field; the handler then finishes it.
	// The same batch, Prepared fields included, goes to the handler, however often it is retried.
	Prepare func(batch []Message)
	// RetryBackoffMin and RetryBackoffMax bound the backoff between handler, DLQ and commit
	// retries. Defaults 100ms and 10s.
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration
	// SessionTimeout is how long the group waits for a silent member (one that was killed)
	// before giving its partitions to others. Default 10s.
	SessionTimeout time.Duration
	// DrainTimeout is how long the batch in hand may still be handled and committed after Run's
	// context ends (graceful shutdown). Default 10s.
	DrainTimeout time.Duration
	// Logger receives poison records, retries and client errors; nil uses slog.Default.
	Logger *slog.Logger
}

func (o *ConsumerOptions) setDefaults() error {
	if o.Topic == "" || o.Group == "" || o.DLQTopic == "" {
		return errors.New("stream: consumer needs a topic, a group and a DLQ topic")
	}
	if o.Topic == o.DLQTopic {
		return errors.New("stream: consumer's DLQ topic must differ from its topic")
	}
	if o.BatchSize < 0 || o.MaxWait < 0 || o.RetryBackoffMin < 0 || o.RetryBackoffMax < 0 || o.SessionTimeout < 0 || o.DrainTimeout < 0 {
		return errors.New("stream: consumer options must not be negative")
	}
	defaults := []struct {
		value *time.Duration
		zero  time.Duration
	}{
		{&o.MaxWait, 100 * time.Millisecond},
		{&o.RetryBackoffMin, 100 * time.Millisecond},
		{&o.RetryBackoffMax, 10 * time.Second},
		{&o.SessionTimeout, 10 * time.Second},
		{&o.DrainTimeout, 10 * time.Second},
	}
	for _, d := range defaults {
		if *d.value == 0 {
			*d.value = d.zero
		}
	}
	if o.BatchSize == 0 {
		o.BatchSize = 32
	}
	if o.RetryBackoffMax < o.RetryBackoffMin {
		o.RetryBackoffMax = o.RetryBackoffMin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// ConsumerStats is a snapshot of a Consumer's counters.
type ConsumerStats struct {
	// Fetched records came from the broker (redeliveries included).
	Fetched int64
	// Handled records were made durable by the handler and committed.
	Handled int64
	// DeadLettered records went to the DLQ.
	DeadLettered int64
	// Batches is how many batches were committed.
	Batches int64
	// HandlerErrors counts failed handler calls (each retried).
	HandlerErrors int64
	// CommitErrors counts failed commits; those records will be delivered again.
	CommitErrors int64
}

// Consumer reads a topic in a consumer group, hands micro-batches to a Handler and commits only
// what the handler made durable: at-least-once delivery. Poison records go to the DLQ with their
// reason and are committed, so one bad record never stalls a partition.
type Consumer struct {
	conn    Connection
	options ConsumerOptions
	handler Handler

	fetched, handled, deadLettered, batches, handlerErrors, commitErrors atomic.Int64

	progress *GroupProgress
}

// NewConsumer checks the options; Run starts consuming.
func NewConsumer(conn Connection, options ConsumerOptions, handler Handler) (*Consumer, error) {
	if err := conn.validate(); err != nil {
		return nil, err
	}
	if err := options.setDefaults(); err != nil {
		return nil, err
	}
	if handler == nil {
		return nil, errors.New("stream: consumer needs a handler")
	}
	progress := newGroupProgress(conn, options.Topic, options.Group)
	return &Consumer{conn: conn, options: options, handler: handler, progress: progress}, nil
}

// Stats returns the current counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{
		Fetched:       c.fetched.Load(),
		Handled:       c.handled.Load(),
		DeadLettered:  c.deadLettered.Load(),
		Batches:       c.batches.Load(),
		HandlerErrors: c.handlerErrors.Load(),
		CommitErrors:  c.commitErrors.Load(),
	}
}

// Run joins the group and consumes until ctx ends, then finishes the batches already fetched (the
// one in hand, the one fetched ahead, and what was being gathered; within DrainTimeout), leaves
// the group and returns nil. It returns an error only when consuming cannot
// go on. Run one at a time per Consumer.
func (c *Consumer) Run(ctx context.Context) error {
	logger := c.options.Logger.With("group", c.options.Group, "topic", c.options.Topic)
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           c.conn.Brokers,
		GroupID:           c.options.Group,
		Topic:             c.options.Topic,
		Dialer:            c.conn.dialer(),
		QueueCapacity:     max(100, 2*c.options.BatchSize),
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           time.Second,
		ReadLagInterval:   -1,
		CommitInterval:    0, // synchronous commits: a commit returns only once it is stored
		HeartbeatInterval: c.options.SessionTimeout / 4,
		SessionTimeout:    c.options.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		// A new group starts at the oldest record, so nothing produced before it joined is lost.
		StartOffset: kafka.FirstOffset,
		ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
			logger.Warn("kafka reader: " + fmt.Sprintf(format, args...))
		}),
	})
	dlq := &kafka.Writer{
		Addr:         kafka.TCP(c.conn.Brokers...),
		Topic:        c.options.DLQTopic,
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchBytes:   MaxRecordBytes + 64<<10,
		Transport:    c.conn.transport(),
	}
	defer dlq.Close()
	defer reader.Close()

	// Work on a batch already fetched continues for DrainTimeout after ctx ends, so a graceful
	// shutdown commits what it has rather than leaving it all to be redelivered.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopDrain := context.AfterFunc(ctx, func() {
		time.AfterFunc(c.options.DrainTimeout, cancelWork)
	})
	defer stopDrain()

	run := &consumerRun{Consumer: c, reader: reader, dlq: dlq, logger: logger}
	// One batch is fetched (and prepared) ahead while the one before it is handled. The fetcher
	// stops when ctx ends or when this loop returns early, and Run waits for it.
	fetched := make(chan fetchResult)
	fetchCtx, stopFetching := context.WithCancel(ctx)
	fetcherDone := make(chan struct{})
	go func() {
		defer close(fetcherDone)
		defer close(fetched)
		run.fetchAhead(fetchCtx, fetched)
	}()
	defer func() {
		stopFetching()
		for range fetched { // a batch fetched but not handled is simply delivered again
		}
		<-fetcherDone
	}()
	for result := range fetched {
		if result.batch != nil {
			if processErr := run.process(work, result.batch); processErr != nil {
				if ctx.Err() != nil {
					logger.Info("consumer stopped before the batch was committed; it will be delivered again", "records", len(result.batch.raw), "err", processErr)
					return nil
				}
				return processErr
			}
		}
		if result.err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return result.err
		}
	}
	return nil
}

// fetchResult is one fetched batch, or why fetching stopped, or both: a batch gathered when ctx
// ended is still handed over, with ctx's error.
type fetchResult struct {
	batch *parsedBatch
	err   error
}

// parsedBatch is a fetched batch split into the records the handler gets and the poison ones.
type parsedBatch struct {
	raw      []kafka.Message
	messages []Message
	// sources[i] is the Kafka message messages[i] came from.
	sources  []kafka.Message
	poisoned []poison
}

// fetchAhead fetches, parses and prepares batches and hands them over one at a time, until ctx
// ends or fetching fails.
func (r *consumerRun) fetchAhead(ctx context.Context, out chan<- fetchResult) {
	for {
		raw, err := r.fetchBatch(ctx)
		var result fetchResult
		if len(raw) > 0 {
			result.batch = r.parse(raw)
			if r.options.Prepare != nil && len(result.batch.messages) > 0 {
				r.options.Prepare(result.batch.messages)
			}
		}
		result.err = err
		if result.batch != nil || result.err != nil {
			out <- result
		}
		if err != nil {
			return
		}
	}
}

type consumerRun struct {
	*Consumer
	reader *kafka.Reader
	dlq    *kafka.Writer
	logger *slog.Logger
}

// fetchBatch blocks for one message, then gathers more for up to MaxWait. It returns what it has
// together with ctx's error when ctx ends, so a gathered batch is still processed.
func (r *consumerRun) fetchBatch(ctx context.Context) ([]kafka.Message, error) {
	retry := newBackoff(r.options.RetryBackoffMin, r.options.RetryBackoffMax)
	var first kafka.Message
	for {
		message, err := r.reader.FetchMessage(ctx)
		if err == nil {
			first = message
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("stream: consumer reader closed: %w", err)
		}
		r.logger.Warn("fetch failed, retrying", "err", err)
		if retry.wait(ctx) != nil {
			return nil, ctx.Err()
		}
	}
	batch := []kafka.Message{first}
	gather, cancel := context.WithTimeout(ctx, r.options.MaxWait)
	defer cancel()
	for len(batch) < r.options.BatchSize {
		message, err := r.reader.FetchMessage(gather)
		if err != nil {
			// Timeout ends the batch; anything else is seen again on the next blocking fetch.
			break
		}
		batch = append(batch, message)
	}
	r.fetched.Add(int64(len(batch)))
	return batch, ctx.Err()
}

// poison is one record bound for the DLQ.
type poison struct {
	message kafka.Message
	err     error
}

// parse decodes the records of a fetched batch and sets aside the poison ones.
func (r *consumerRun) parse(raw []kafka.Message) *parsedBatch {
	batch := &parsedBatch{raw: raw, messages: make([]Message, 0, len(raw)), sources: make([]kafka.Message, 0, len(raw))}
	for _, message := range raw {
		record, err := Decode(message.Value)
		if err == nil && r.options.ValidateJPEG {
			err = ValidateJPEG(record.JPEG)
		}
		if err != nil {
			batch.poisoned = append(batch.poisoned, poison{message: message, err: err})
			continue
		}
		batch.messages = append(batch.messages, Message{Record: record, Topic: message.Topic, Partition: message.Partition, Offset: message.Offset, Time: message.Time})
		batch.sources = append(batch.sources, message)
	}
	return batch
}

// process runs the handler until it succeeds, dead-letters the poison records and commits. It
// returns an error only when ctx ends before the commit.
func (r *consumerRun) process(ctx context.Context, batch *parsedBatch) error {
	poisoned := batch.poisoned
	durable := len(batch.messages)
	if len(batch.messages) > 0 {
		rejected, err := r.handle(ctx, batch.messages)
		if err != nil {
			return err
		}
		for index, reason := range rejected {
			poisoned = append(poisoned, poison{message: batch.sources[index], err: reason})
		}
		durable -= len(rejected)
	}
	if len(poisoned) > 0 {
		if err := r.deadLetter(ctx, poisoned); err != nil {
			return err
		}
	}
	r.commit(ctx, batch.raw)
	r.handled.Add(int64(durable))
	r.batches.Add(1)
	return nil
}

// handle calls the handler until it returns nil or a RejectedError, backing off between tries.
func (r *consumerRun) handle(ctx context.Context, messages []Message) (map[int]error, error) {
	retry := newBackoff(r.options.RetryBackoffMin, r.options.RetryBackoffMax)
	for {
		err := r.handler(ctx, messages)
		if err == nil {
			return nil, nil
		}
		var rejected *RejectedError
		if errors.As(err, &rejected) && validRejections(rejected, len(messages)) {
			return rejected.Records, nil
		}
		r.handlerErrors.Add(1)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("stream: handler: %w", err)
		}
		r.logger.Warn("handler failed, retrying the batch", "records", len(messages), "err", err)
		if retry.wait(ctx) != nil {
			return nil, fmt.Errorf("stream: handler: %w", err)
		}
	}
}

func validRejections(rejected *RejectedError, n int) bool {
	for index := range rejected.Records {
		if index < 0 || index >= n {
			return false
		}
	}
	return true
}

// DLQ header keys. The value and key of a dead letter are the original record's, unchanged.
const (
	HeaderReason    = "reid.dlq.reason"    // Reason code: not-crop-record, truncated, bad-jpeg, ...
	HeaderError     = "reid.dlq.error"     // the full error text
	HeaderTopic     = "reid.dlq.topic"     // original topic
	HeaderPartition = "reid.dlq.partition" // original partition, decimal
	HeaderOffset    = "reid.dlq.offset"    // original offset, decimal
	HeaderGroup     = "reid.dlq.group"     // consumer group that gave up on it
	HeaderTime      = "reid.dlq.time"      // when it was dead-lettered, RFC 3339 UTC
)

// deadLetter writes the poison records to the DLQ, retrying until all are acknowledged: a record is
// committed only once its dead letter is safe.
func (r *consumerRun) deadLetter(ctx context.Context, poisoned []poison) error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	letters := make([]kafka.Message, 0, len(poisoned))
	for _, p := range poisoned {
		reason := Reason(p.err)
		r.logger.Warn("poison record sent to the DLQ", "reason", reason, "partition", p.message.Partition, "offset", p.message.Offset, "err", p.err)
		headers := append([]kafka.Header(nil), p.message.Headers...)
		headers = append(headers,
			kafka.Header{Key: HeaderReason, Value: []byte(reason)},
			kafka.Header{Key: HeaderError, Value: []byte(p.err.Error())},
			kafka.Header{Key: HeaderTopic, Value: []byte(p.message.Topic)},
			kafka.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(p.message.Partition))},
			kafka.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(p.message.Offset, 10))},
			kafka.Header{Key: HeaderGroup, Value: []byte(r.options.Group)},
			kafka.Header{Key: HeaderTime, Value: []byte(now)},
		)
		letters = append(letters, kafka.Message{Key: p.message.Key, Value: p.message.Value, Headers: headers})
	}
	retry := newBackoff(r.options.RetryBackoffMin, r.options.RetryBackoffMax)
	for {
		err := r.dlq.WriteMessages(ctx, letters...)
		if err == nil {
			r.deadLettered.Add(int64(len(letters)))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stream: dead-letter: %w", err)
		}
		r.logger.Warn("DLQ write failed, retrying", "records", len(letters), "err", err)
		if retry.wait(ctx) != nil {
			return fmt.Errorf("stream: dead-letter: %w", err)
		}
	}
}

// commit stores the batch's offsets. A failed commit loses nothing: the records come again and the
// idempotent handler absorbs them, and a later commit covers these offsets too. So it retries a few
// times and then carries on.
func (r *consumerRun) commit(ctx context.Context, batch []kafka.Message) {
	retry := newBackoff(r.options.RetryBackoffMin, r.options.RetryBackoffMax)
	for attempt := 1; ; attempt++ {
		err := r.reader.CommitMessages(ctx, batch...)
		if err == nil {
			return
		}
		r.commitErrors.Add(1)
		if attempt == 5 || ctx.Err() != nil {
			r.logger.Warn("commit failed; the batch will be delivered again", "records", len(batch), "err", err)
			return
		}
		if retry.wait(ctx) != nil {
			return
		}
	}
}

// DeadLetter is a DLQ record read back: the original record and why it was rejected.
type DeadLetter struct {
	Reason string
	Error  string
	// Topic, Partition and Offset are where the original record was read.
	Topic     string
	Partition int
	Offset    int64
	Group     string
	Time      time.Time
	// Key, Value and Headers are the original record's (the DLQ headers left out).
	Key     []byte
	Value   []byte
	Headers []kafka.Header
	// DLQTopic, DLQPartition and DLQOffset are where the dead letter itself is.
	DLQTopic     string
	DLQPartition int
	DLQOffset    int64
}

// ParseDeadLetter reads the DLQ headers of message; it fails if the reason header is missing.
func ParseDeadLetter(message kafka.Message) (DeadLetter, error) {
	letter := DeadLetter{Key: message.Key, Value: message.Value, Partition: -1, Offset: -1,
		DLQTopic: message.Topic, DLQPartition: message.Partition, DLQOffset: message.Offset}
	for _, header := range message.Headers {
		value := string(header.Value)
		switch header.Key {
		case HeaderReason:
			letter.Reason = value
		case HeaderError:
			letter.Error = value
		case HeaderTopic:
			letter.Topic = value
		case HeaderPartition:
			if n, err := strconv.Atoi(value); err == nil {
				letter.Partition = n
			}
		case HeaderOffset:
			if n, err := strconv.ParseInt(value, 10, 64); err == nil {
				letter.Offset = n
			}
		case HeaderGroup:
			letter.Group = value
		case HeaderTime:
			if t, err := time.Parse(time.RFC3339Nano, value); err == nil {
				letter.Time = t
			}
		default:
			letter.Headers = append(letter.Headers, header)
		}
	}
	if letter.Reason == "" {
		return DeadLetter{}, fmt.Errorf("stream: message at offset %d has no %s header", message.Offset, HeaderReason)
	}
	return letter, nil
}

// Lag is the consumer group's GroupProgress.Lag.
func (c *Consumer) Lag(ctx context.Context) (int64, error) { return c.progress.Lag(ctx) }

// Progress reads the consumer's group's progress from the broker.
func (c *Consumer) Progress() *GroupProgress { return c.progress }

// GroupProgress reads from the broker how far a consumer group has come through a topic. The group
// may be consumed in another process: it reads the broker, not a Consumer.
type GroupProgress struct {
	topic, group string
	// admin is one client, so that polling reuses its connections.
	admin *kafka.Client
}

// NewGroupProgress reads group's progress through topic.
func NewGroupProgress(conn Connection, topic, group string) (*GroupProgress, error) {
	if err := conn.validate(); err != nil {
		return nil, err
	}
	if topic == "" || group == "" {
		return nil, errors.New("stream: group progress needs a topic and a group")
	}
	return newGroupProgress(conn, topic, group), nil
}

func newGroupProgress(conn Connection, topic, group string) *GroupProgress {
	admin := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: conn.transport(), Timeout: 10 * time.Second}
	return &GroupProgress{topic: topic, group: group, admin: admin}
}

// Lag is how many records of the topic the group has not committed yet: the sum over
// partitions of the end offset minus the group's committed offset (the start offset where the
// group has committed nothing). Records are committed only after the handler made them durable or
// they were dead-lettered, so a lag of 0 means every record written so far is done, whichever run
// of the process wrote it.
func (g *GroupProgress) Lag(ctx context.Context) (int64, error) {
	ranges, done, err := g.positions(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream: lag: %w", err)
	}
	var lag int64
	for _, span := range ranges {
		lag += max(span.last-done[span.partition], 0)
	}
	return lag, nil
}

// Marks are offsets in a topic, by partition: a mark stands for the records before it.
type Marks map[int]int64

// EndMarks marks every record written to the topic so far: per partition, the offset the next
// record will get.
func (g *GroupProgress) EndMarks(ctx context.Context) (Marks, error) {
	ranges, err := partitionRanges(ctx, g.admin, g.topic)
	if err != nil {
		return nil, fmt.Errorf("stream: end offsets: %w", err)
	}
	marks := make(Marks, len(ranges))
	for _, span := range ranges {
		marks[span.partition] = span.last
	}
	return marks, nil
}

// Passed reports whether the group is done with every record before marks: it has committed
// past them, or retention has deleted them.
func (g *GroupProgress) Passed(ctx context.Context, marks Marks) (bool, error) {
	_, done, err := g.positions(ctx)
	if err != nil {
		return false, fmt.Errorf("stream: group position: %w", err)
	}
	for partition, mark := range marks {
		if done[partition] < mark {
			return false, nil
		}
	}
	return true, nil
}

// positions returns the topic's partitions and, for each, the offset before which the group is
// done: its committed offset, or the oldest record still there where nothing is committed yet or
// retention has deleted records past the committed offset (the group starts there).
func (g *GroupProgress) positions(ctx context.Context) ([]partitionRange, map[int]int64, error) {
	ranges, err := partitionRanges(ctx, g.admin, g.topic)
	if err != nil {
		return nil, nil, err
	}
	partitions := make([]int, len(ranges))
	for i, span := range ranges {
		partitions[i] = span.partition
	}
	fetched, err := g.admin.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g.group, Topics: map[string][]int{g.topic: partitions}})
	if err != nil {
		return nil, nil, fmt.Errorf("committed offsets: %w", err)
	}
	committed := map[int]int64{} // absent: nothing committed
	switch {
	case errors.Is(fetched.Error, kafka.GroupIdNotFound):
		// A group that has never joined has committed nothing (Kafka answers with no offsets,
		// some brokers with this error).
		fetched.Topics = nil
	case fetched.Error != nil:
		return nil, nil, fmt.Errorf("committed offsets: %w", fetched.Error)
	}
	for _, partition := range fetched.Topics[g.topic] {
		if partition.Error != nil {
			return nil, nil, fmt.Errorf("partition %d committed offset: %w", partition.Partition, partition.Error)
		}
		committed[partition.Partition] = partition.CommittedOffset
	}
	done := make(map[int]int64, len(ranges))
	for _, span := range ranges {
		done[span.partition] = max(committed[span.partition], span.first)
	}
	return ranges, done, nil
}
