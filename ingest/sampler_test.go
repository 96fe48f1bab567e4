package ingest

import (
	"testing"
	"time"
)

func TestSampler(t *testing.T) {
	frames := func(fps float64, n int) []time.Duration {
		positions := make([]time.Duration, n)
		for i := range positions {
			// Rounded down to whole microseconds, as FFmpeg positions are.
			positions[i] = time.Duration(float64(i)/fps*1e6) * time.Microsecond
		}
		return positions
	}
	tests := []struct {
		name      string
		target    float64
		positions []time.Duration
		want      int
	}{
		{"zero keeps everything", 0, frames(30, 90), 90},
		{"30 to 10 fps keeps every third", 10, frames(30, 90), 30},
		{"25 to 10 fps keeps 10 per second", 10, frames(25, 100), 40},
		{"same rate keeps all", 10, frames(10, 50), 50},
		{"higher target keeps all", 60, frames(10, 50), 50},
		{"1 fps from 10 fps", 1, frames(10, 100), 10},
		{
			"a gap restarts the schedule without a burst", 10,
			[]time.Duration{0, 100 * time.Millisecond, 2 * time.Second, 2033 * time.Millisecond, 2066 * time.Millisecond, 2100 * time.Millisecond},
			4, // 0, 0.1, 2.0, 2.1
		},
	}
	for _, test := range tests {
		sampler := NewSampler(test.target)
		kept := 0
		for _, position := range test.positions {
			if sampler.Keep(position) {
				kept++
			}
		}
		if kept != test.want {
			t.Errorf("%s: kept %d of %d, want %d", test.name, kept, len(test.positions), test.want)
		}
	}
}

func TestSamplerKeepsEveryThirdExactly(t *testing.T) {
	sampler := NewSampler(10)
	for i := range 30 {
		position := time.Duration(float64(i) / 30 * float64(time.Second))
		if got, want := sampler.Keep(position), i%3 == 0; got != want {
			t.Errorf("frame %d at %v: kept %v, want %v", i, position, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	backoff := Backoff{Initial: 500 * time.Millisecond, Max: 5 * time.Second}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for attempt, delay := range want {
		if got := backoff.Delay(attempt + 1); got != delay {
			t.Errorf("attempt %d: delay %v, want %v", attempt+1, got, delay)
		}
	}
	if got := backoff.Delay(1000); got != 5*time.Second {
		t.Errorf("attempt 1000: delay %v (overflow?)", got)
	}
}
