package lookup

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/vecmath"
)

// Track consensus: one crop is a noisy view of a person (a few dozen pixels wide, half hidden,
// blurred), but the tracker has already said which crops show the same person in one camera.
// So a candidate is scored by its whole track as well as by itself: its track's mean embedding
// (the crops' vectors summed and normalised, the usual tracklet feature of multi-camera
// tracking) is compared with the query, and the ranking score is
//
//	consensusWeight * cosine(query, track mean) + (1 - consensusWeight) * cosine(query, crop).
//
// Every crop of a track the candidates touch is a result candidate, so a track whose mean is close
// brings its other crops along. The crop searched with is left out of its own track's mean: a
// search by crop id is then scored as an upload of the same image would be.
//
// A search by crop id knows more: the query's track was seen in one camera from its first to its
// last crop, and another track of that camera alive at the same time is another person (one
// person is one track at a time). Those tracks are dropped from the results.
//
// On vtest.avi (PETS 2009 S2.L1, 19 walkers) this took same-track precision@5 from 0.535 to 0.74
// and same-person precision@5 against the ground truth from 0.556 to 0.60 (docs/BENCHMARKS.md).
// The weight 0.7 was chosen by same-person precision, the real question, not by the same-track
// metric, which grows further towards weight 1 while same-person precision falls.
const (
	consensusWeight = 0.7
	// consensusTracks bounds how many candidate tracks are read back from the index per search.
	consensusTracks = 64
	// consensusItems bounds the crops read back for them (a track standing in view for an hour
	// has thousands; its mean is well estimated by a few thousand).
	consensusItems = 8192
)

// consensusCandidates is how many nearest crops to fetch to find the tracks to score for a top-k.
// Measured on vtest.avi, 30 to 200 candidates give the same results for k = 5; each more costs
// its track's vectors read back.
func consensusCandidates(k int) int {
	return min(max(2*k, 30), 10000)
}

// queryTrack is what a search by crop id knows about the crop: its id and, when tracked, its track.
type queryTrack struct {
	cropID string
	track  *index.TrackRef
}

// ranked is a match with the score that ordered it.
type ranked struct {
	match      index.Match
	trackScore float32
	hasTrack   bool
	rank       float32
}

// rankByTrack orders the candidates and their tracks' other crops by track consensus and returns
// the best k with their track scores (NaN where a crop had no track to score by) and the scores
// that ordered them.
func rankByTrack(ctx context.Context, searcher *searcherBox, vector []float32, query queryTrack, candidates []index.Match, filter index.Filter, k int) (searchResult, error) {
	var refs []index.TrackRef
	seen := map[index.TrackRef]bool{}
	addTrack := func(ref index.TrackRef) {
		if ref.Track >= 0 && !seen[ref] && len(refs) < consensusTracks {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	if query.track != nil {
		addTrack(*query.track)
	}
	for _, candidate := range candidates {
		addTrack(index.TrackRef{Camera: candidate.Metadata.Camera, Track: candidate.Metadata.Track})
	}
	items, err := searcher.TrackItems(ctx, searcher.version, refs, consensusItems)
	if err != nil {
		return searchResult{}, fmt.Errorf("index track items: %w", err)
	}

	type trackState struct {
		sum         []float64
		members     []index.Item
		first, last int64   // unix nanoseconds of the track's first and last crop
		score       float32 // cosine of the query to the members' mean
	}
	tracks := map[index.TrackRef]*trackState{}
	for _, item := range items {
		if len(item.Vector) != len(vector) {
			continue
		}
		ref := index.TrackRef{Camera: item.Metadata.Camera, Track: item.Metadata.Track}
		state := tracks[ref]
		if state == nil {
			state = &trackState{sum: make([]float64, len(vector)), first: math.MaxInt64, last: math.MinInt64}
			tracks[ref] = state
		}
		nanos := item.Metadata.Time.UnixNano()
		state.first, state.last = min(state.first, nanos), max(state.last, nanos)
		if item.ID == query.cropID {
			continue
		}
		state.members = append(state.members, item)
		for i, value := range item.Vector {
			state.sum[i] += float64(value)
		}
	}

	// Tracks of the query's camera that were alive while the query's track was are other people.
	var elsewhere func(ref index.TrackRef) bool
	if query.track != nil {
		if own := tracks[*query.track]; own != nil {
			elsewhere = func(ref index.TrackRef) bool {
				other := tracks[ref]
				return ref != *query.track && ref.Camera == query.track.Camera && other != nil &&
					other.first <= own.last && other.last >= own.first
			}
		}
	}

	// Each track's score once; then every crop is ranked by its own score and its track's.
	for _, state := range tracks {
		if len(state.members) > 0 {
			state.score = cosine64(vector, state.sum)
		}
	}
	var results []ranked
	added := map[string]bool{}
	add := func(match index.Match, state *trackState) {
		if added[match.ID] {
			return
		}
		added[match.ID] = true
		result := ranked{match: match, rank: match.Score}
		if state != nil && len(state.members) > 0 && match.ID != query.cropID {
			result.trackScore, result.hasTrack = state.score, true
			result.rank = consensusWeight*state.score + (1-consensusWeight)*match.Score
		}
		results = append(results, result)
	}
	for ref, state := range tracks {
		if elsewhere != nil && elsewhere(ref) {
			continue
		}
		for _, member := range state.members {
			score := vecmath.Dot(vector, member.Vector)
			if filter.Keep(member.Metadata, score) {
				add(index.Match{ID: member.ID, Score: score, Metadata: member.Metadata}, state)
			}
		}
	}
	// Candidates not added above: untracked ones, the query itself, and any whose track was cut
	// off by the bounds (scored with what was read of it).
	for _, candidate := range candidates {
		ref := index.TrackRef{Camera: candidate.Metadata.Camera, Track: candidate.Metadata.Track}
		if elsewhere == nil || !elsewhere(ref) {
			add(candidate, tracks[ref])
		}
	}

	sort.SliceStable(results, func(a, b int) bool {
		if results[a].rank != results[b].rank {
			return results[a].rank > results[b].rank
		}
		return results[a].match.ID < results[b].match.ID
	})
	if len(results) > k {
		results = results[:k]
	}
	out := searchResult{
		matches:     make([]index.Match, len(results)),
		trackScores: make([]float32, len(results)),
		rankScores:  make([]float32, len(results)),
	}
	for i, result := range results {
		out.matches[i], out.rankScores[i] = result.match, result.rank
		out.trackScores[i] = float32(math.NaN())
		if result.hasTrack {
			out.trackScores[i] = result.trackScore
		}
	}
	return out, nil
}

// cosine64 is the cosine similarity of a unit vector and an unnormalised sum.
func cosine64(unit []float32, sum []float64) float32 {
	var dot, norm float64
	for i, value := range sum {
		dot += float64(unit[i]) * value
		norm += value * value
	}
	if norm == 0 {
		return 0
	}
	return float32(dot / math.Sqrt(norm))
}
