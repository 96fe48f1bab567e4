// Package track follows people from frame to frame within one camera (SORT: Bewley et al. 2016,
// "Simple Online and Realtime Tracking"). Each track predicts its next box with a constant-velocity
// Kalman filter; detections are matched to predictions by IoU with an optimal (Hungarian)
// assignment; unmatched detections start tracks and tracks unseen for too long end.
package track

import "github.com/reid-project/reid/detector"

// Options configure a Tracker.
type Options struct {
	// IoU is the least overlap between a detection and a track's predicted box for a match.
	IoU float64
	// MaxAge is how many frames a track survives without a matching detection.
	MaxAge int
	// MinHits is how many matched frames (including the first) make a track confirmed.
	MinHits int
}

// Assignment says which track a detection joined.
type Assignment struct {
	// Track is the track id, unique within one Tracker and counting up from 1.
	Track int64
	// Confirmed reports whether the track has been matched MinHits times; unconfirmed tracks are
	// often false detections.
	Confirmed bool
	// Hits is how many frames the track has been matched in, this one included.
	Hits int
}

type track struct {
	id              int64
	filter          *kalman
	hits            int
	framesUnmatched int
	predicted       detector.Box
}

// Tracker is one camera's set of tracks. It is not safe for concurrent use.
type Tracker struct {
	options Options
	tracks  []*track
	lastID  int64
}

// New returns an empty tracker.
func New(options Options) *Tracker {
	return &Tracker{options: options}
}

// Active is the number of live tracks.
func (t *Tracker) Active() int { return len(t.tracks) }

// Update advances every track by one frame and assigns each of the frame's detections (boxes in
// frame pixels) to a track. The result has one entry per box, in order.
func (t *Tracker) Update(boxes []detector.Box) []Assignment {
	live := t.tracks[:0]
	for _, tr := range t.tracks {
		tr.filter.predict()
		tr.predicted = tr.filter.box()
		if tr.predicted.Area() > 0 {
			live = append(live, tr)
		}
	}
	t.tracks = live

	matchedTrack := make([]int, len(boxes)) // index into t.tracks, or -1
	for i := range matchedTrack {
		matchedTrack[i] = -1
	}
	if len(boxes) > 0 && len(t.tracks) > 0 {
		cost := make([][]float64, len(boxes))
		for i, box := range boxes {
			cost[i] = make([]float64, len(t.tracks))
			for j, tr := range t.tracks {
				cost[i][j] = 1 - float64(detector.IoU(box, tr.predicted))
			}
		}
		for i, j := range Assign(cost) {
			if j >= 0 && 1-cost[i][j] >= t.options.IoU {
				matchedTrack[i] = j
			}
		}
	}

	matched := make([]bool, len(t.tracks))
	assignments := make([]Assignment, len(boxes))
	var started []*track
	for i, box := range boxes {
		var tr *track
		if j := matchedTrack[i]; j >= 0 {
			tr = t.tracks[j]
			matched[j] = true
			tr.filter.update(box)
			tr.hits++
			tr.framesUnmatched = 0
		} else {
			t.lastID++
			tr = &track{id: t.lastID, filter: newKalman(box), hits: 1}
			started = append(started, tr)
		}
		assignments[i] = Assignment{Track: tr.id, Confirmed: tr.hits >= t.options.MinHits, Hits: tr.hits}
	}
	kept := t.tracks[:0]
	for j, tr := range t.tracks {
		if !matched[j] {
			tr.framesUnmatched++
		}
		if tr.framesUnmatched <= t.options.MaxAge {
			kept = append(kept, tr)
		}
	}
	t.tracks = append(kept, started...)
	return assignments
}
