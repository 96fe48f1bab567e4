package track

import (
	"math"
	"math/rand"
	"testing"

	"github.com/reid-project/reid/detector"
)

// bruteForce finds the least total cost over all assignments of rows to distinct columns.
func bruteForce(cost [][]float64) float64 {
	rows, columns := len(cost), len(cost[0])
	best := math.Inf(1)
	used := make([]bool, columns)
	var walk func(row int, total float64)
	walk = func(row int, total float64) {
		if row == rows {
			best = min(best, total)
			return
		}
		if rows > columns { // some rows stay unpaired: allow skipping while enough remain
			if rows-row > columns-countTrue(used) {
				walk(row+1, total)
			}
		}
		for j := range columns {
			if !used[j] {
				used[j] = true
				walk(row+1, total+cost[row][j])
				used[j] = false
			}
		}
	}
	walk(0, 0)
	return best
}

func countTrue(values []bool) int {
	n := 0
	for _, v := range values {
		if v {
			n++
		}
	}
	return n
}

func TestAssign(t *testing.T) {
	tests := []struct {
		name string
		cost [][]float64
		want []int
	}{
		{"empty", nil, nil},
		{"one", [][]float64{{5}}, []int{0}},
		{"diagonal is not greedy", [][]float64{{1, 2}, {1, 10}}, []int{1, 0}},
		{"classic 3x3", [][]float64{{4, 1, 3}, {2, 0, 5}, {3, 2, 2}}, []int{1, 0, 2}},
		{"more columns", [][]float64{{9, 1, 9}, {9, 9, 1}}, []int{1, 2}},
		{"more rows", [][]float64{{9, 1}, {1, 9}, {5, 5}}, []int{1, 0, -1}},
		{"no columns", [][]float64{{}, {}}, []int{-1, -1}},
	}
	for _, test := range tests {
		got := Assign(test.cost)
		if len(got) != len(test.want) {
			t.Errorf("%s: Assign = %v, want %v", test.name, got, test.want)
			continue
		}
		for i := range got {
			if got[i] != test.want[i] {
				t.Errorf("%s: Assign = %v, want %v", test.name, got, test.want)
				break
			}
		}
	}
	random := rand.New(rand.NewSource(1))
	for trial := range 300 {
		rows, columns := 1+random.Intn(6), 1+random.Intn(6)
		cost := make([][]float64, rows)
		for i := range cost {
			cost[i] = make([]float64, columns)
			for j := range cost[i] {
				cost[i][j] = float64(random.Intn(20))
			}
		}
		got := Assign(cost)
		total, seen := 0.0, map[int]bool{}
		for i, j := range got {
			if j < 0 {
				continue
			}
			if seen[j] {
				t.Fatalf("trial %d: column %d used twice in %v", trial, j, got)
			}
			seen[j] = true
			total += cost[i][j]
		}
		if len(seen) != min(rows, columns) {
			t.Fatalf("trial %d: %d pairs for %dx%d", trial, len(seen), rows, columns)
		}
		if want := bruteForce(cost); total != want {
			t.Fatalf("trial %d: total %v, optimum %v (%v for %v)", trial, total, want, got, cost)
		}
	}
}

func box(x, y, w, h float32) detector.Box { return detector.Box{X1: x, Y1: y, X2: x + w, Y2: y + h} }

func TestTrackerFollowsWalkers(t *testing.T) {
	tracker := New(Options{IoU: 0.3, MaxAge: 3, MinHits: 2})
	// Two people walking towards each other at 6 px/frame, 30 px wide: their boxes cross around
	// frame 10. Constant-velocity prediction must keep their identities through the crossing.
	ids := map[int64]bool{}
	var left, right int64
	for frame := range 20 {
		a := box(100+6*float32(frame), 50, 30, 80)
		b := box(220-6*float32(frame), 52, 30, 80)
		got := tracker.Update([]detector.Box{a, b})
		if frame == 0 {
			left, right = got[0].Track, got[1].Track
			if got[0].Confirmed {
				t.Error("a track is confirmed on its first hit with MinHits 2")
			}
		}
		if got[0].Track != left || got[1].Track != right {
			t.Fatalf("frame %d: tracks %d,%d, want %d,%d", frame, got[0].Track, got[1].Track, left, right)
		}
		if frame >= 1 && (!got[0].Confirmed || !got[1].Confirmed) {
			t.Errorf("frame %d: tracks not confirmed after %d hits", frame, got[0].Hits)
		}
		ids[got[0].Track], ids[got[1].Track] = true, true
	}
	if len(ids) != 2 {
		t.Errorf("%d track ids for two walkers", len(ids))
	}
}

func TestTrackerMissedFramesAndAging(t *testing.T) {
	tracker := New(Options{IoU: 0.3, MaxAge: 2, MinHits: 1})
	first := tracker.Update([]detector.Box{box(10, 10, 20, 50)})[0].Track
	tracker.Update([]detector.Box{box(14, 10, 20, 50)})
	// Missing for two frames (MaxAge): the track coasts on its velocity and is picked up again.
	tracker.Update(nil)
	tracker.Update(nil)
	if got := tracker.Update([]detector.Box{box(26, 10, 20, 50)})[0].Track; got != first {
		t.Errorf("after a 2-frame gap: track %d, want %d", got, first)
	}
	// Missing for three frames: the track has ended and the person gets a new id.
	for range 3 {
		tracker.Update(nil)
	}
	if tracker.Active() != 0 {
		t.Errorf("%d tracks alive after MaxAge+1 empty frames", tracker.Active())
	}
	if got := tracker.Update([]detector.Box{box(38, 10, 20, 50)})[0].Track; got == first {
		t.Error("a track older than MaxAge was continued")
	}
}

func TestTrackerIoUThreshold(t *testing.T) {
	tracker := New(Options{IoU: 0.5, MaxAge: 1, MinHits: 1})
	first := tracker.Update([]detector.Box{box(0, 0, 20, 40)})[0].Track
	// IoU with the prediction (same place) is 10/30: below 0.5, so a new track starts and the old
	// one, unmatched, stays alive beside it.
	got := tracker.Update([]detector.Box{box(10, 0, 20, 40)})[0]
	if got.Track == first {
		t.Error("a detection below the IoU threshold joined the track")
	}
	if tracker.Active() != 2 {
		t.Errorf("%d active tracks, want 2", tracker.Active())
	}
}
