package ingest

import "time"

// samplerTolerance absorbs rounding in stream positions (a 30 fps stream reports 99.99 ms for its
// fourth frame), so a frame that is due is not pushed to the next slot.
const samplerTolerance = time.Millisecond

// Sampler thins a stream to a target rate by stream position: it keeps the first frame and then
// the first frame at or after each multiple of the target interval.
type Sampler struct {
	interval time.Duration
	next     time.Duration
	started  bool
}

// NewSampler keeps at most fps frames per second of stream time; fps <= 0 keeps every frame.
func NewSampler(fps float64) *Sampler {
	if fps <= 0 {
		return &Sampler{}
	}
	return &Sampler{interval: time.Duration(float64(time.Second) / fps)}
}

// Keep reports whether the frame at position is to be processed. Positions must not decrease.
func (s *Sampler) Keep(position time.Duration) bool {
	if s.interval == 0 {
		return true
	}
	if s.started && position+samplerTolerance < s.next {
		return false
	}
	if !s.started {
		s.started = true
		s.next = position
	}
	s.next += s.interval
	if s.next <= position {
		// After a gap in the stream, restart the schedule here rather than keeping a burst.
		s.next = position + s.interval
	}
	return true
}

// Backoff is a capped exponential delay between attempts to reopen a live source.
type Backoff struct {
	Initial, Max time.Duration
}

// Delay is the wait before attempt (1 for the first retry): Initial doubled per earlier attempt,
// never more than Max.
func (b Backoff) Delay(attempt int) time.Duration {
	delay := b.Initial
	for i := 1; i < attempt && delay < b.Max; i++ {
		delay *= 2
	}
	return min(delay, b.Max)
}
