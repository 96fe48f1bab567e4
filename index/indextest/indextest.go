// Package indextest is the behavioural suite every index.Index backend passes: the embedded index
// runs it on every `go test`, the Milvus backend runs it against its in-process fake and, when
// REID_MILVUS_ADDR is set, against a real Milvus.
//
// The suite assumes nothing beyond the index.Index contract. Times it stores have millisecond
// precision, so a backend must round-trip at least that. Vectors it stores are L2-normalised.
package indextest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/index"
)

// Backend describes the index under test.
type Backend struct {
	// Open returns a fresh, empty index for one subtest. The suite closes it when the subtest
	// ends; Open registers any other cleanup (temporary directories, collections) with t.
	Open func(t testing.TB) index.Index
	// OpenAt, when set, opens the index kept in state (a directory the suite made with
	// t.TempDir, or any stable key a remote backend maps to its storage). The persistence tests
	// open, write, close and reopen the same state. Nil skips only the persistence tests.
	OpenAt func(t testing.TB, state string) index.Index
	// Approximate says searches without Query.Exact may miss a true neighbour. The suite then
	// checks recall instead of exact order for those searches; returned scores must still be
	// the true cosine similarity and filters must still hold exactly.
	Approximate bool
	// Rounding is how far a stored value may come back from the one written, relative to its
	// magnitude or, for the tiniest, to 2^-14 (binary16 storage: 2^-11); 0 means exactly. Scores may then be off by as much
	// for unit vectors, and near-ties may swap.
	Rounding float64
}

// Run runs the suite against indexes made by open.
func Run(t *testing.T, open func(t testing.TB) index.Index) {
	RunBackend(t, Backend{Open: open})
}

// RunBackend runs the suite against backend.
func RunBackend(t *testing.T, backend Backend) {
	tests := []struct {
		name string
		run  func(t *testing.T, backend Backend)
	}{
		{"Versions", testVersions},
		{"BadInput", testBadInput},
		{"Dimension", testDimension},
		{"UpsertReplace", testUpsertReplace},
		{"SearchOrder", testSearchOrder},
		{"SearchMultiVector", testSearchMultiVector},
		{"Filters", testFilters},
		{"Get", testGet},
		{"TrackItems", testTrackItems},
		{"Delete", testDelete},
		{"DeleteBefore", testDeleteBefore},
		{"DeleteCameraBefore", testDeleteCameraBefore},
		{"VersionIsolation", testVersionIsolation},
		{"Activate", testActivate},
		{"DropVersion", testDropVersion},
		{"Concurrent", testConcurrent},
		{"Persistence", testPersistence},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) { test.run(t, backend) })
	}
}

// epoch is the time of the suite's first item; items are one second apart after it.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, backend Backend) index.Index {
	t.Helper()
	ix := backend.Open(t)
	t.Cleanup(func() {
		if err := ix.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return ix
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randomVector is a normalised vector with values from rng.
func randomVector(rng *rand.Rand, dim int) []float32 {
	vector := make([]float32, dim)
	var norm float64
	for i := range vector {
		value := rng.NormFloat64()
		vector[i] = float32(value)
		norm += value * value
	}
	scale := float32(1 / math.Sqrt(norm))
	for i := range vector {
		vector[i] *= scale
	}
	return vector
}

// makeItems returns count items of dim with ids "<prefix>-<i>", cameras cam-0..cam-3 in turn and
// times one second apart from epoch.
func makeItems(rng *rand.Rand, prefix string, count, dim int, model string) []index.Item {
	items := make([]index.Item, count)
	for i := range items {
		items[i] = index.Item{
			ID:     fmt.Sprintf("%s-%d", prefix, i),
			Vector: randomVector(rng, dim),
			Metadata: index.Metadata{
				Camera: fmt.Sprintf("cam-%d", i%4),
				Time:   epoch.Add(time.Duration(i) * time.Second),
				Track:  int64(i / 3),
				Frame:  int64(i * 10),
				Box:    [4]int32{int32(i), int32(2 * i), 40, 100},
				Model:  model,
			},
		}
	}
	return items
}

func dot(a, b []float32) float32 {
	var sum float32
	for i := range a {
		sum += a[i] * b[i]
	}
	return sum
}

// bruteForce is the reference search: every item passing filter, by descending score.
func bruteForce(items []index.Item, query []float32, k int, filter index.Filter) []index.Match {
	var matches []index.Match
	for _, item := range items {
		score := dot(item.Vector, query)
		if filter.Keep(item.Metadata, score) {
			matches = append(matches, index.Match{ID: item.ID, Score: score, Metadata: item.Metadata})
		}
	}
	sort.SliceStable(matches, func(i, j int) bool { return matches[i].Score > matches[j].Score })
	if len(matches) > k {
		matches = matches[:k]
	}
	return matches
}

const scoreTolerance = 1e-4

// checkMatches compares a backend's result for one query with the brute-force reference. With
// exact set the ids must come in the reference order (ties may swap); otherwise recall@k must
// reach minRecall. Scores and metadata must always be right, and every match must pass filter.
func (backend Backend) checkMatches(t *testing.T, label string, got, want []index.Match, byID map[string]index.Item, query []float32, filter index.Filter, exact bool, minRecall float64) {
	t.Helper()
	scoreTolerance := float32(scoreTolerance + backend.Rounding)
	for i, match := range got {
		item, ok := byID[match.ID]
		if !ok {
			t.Errorf("%s: match %d has unknown id %q", label, i, match.ID)
			continue
		}
		if score := dot(item.Vector, query); math.Abs(float64(score-match.Score)) > float64(scoreTolerance) {
			t.Errorf("%s: match %d (%s) score %v, cosine is %v", label, i, match.ID, match.Score, score)
		}
		if i > 0 && match.Score > got[i-1].Score+scoreTolerance {
			t.Errorf("%s: match %d score %v above previous %v: not descending", label, i, match.Score, got[i-1].Score)
		}
		if !sameMetadata(match.Metadata, item.Metadata) {
			t.Errorf("%s: match %d (%s) metadata %+v, stored %+v", label, i, match.ID, match.Metadata, item.Metadata)
		}
		if !filter.Keep(match.Metadata, match.Score+scoreTolerance) || !filter.Keep(item.Metadata, dot(item.Vector, query)+scoreTolerance) {
			t.Errorf("%s: match %d (%s) does not pass the filter", label, i, match.ID)
		}
	}
	if exact {
		if len(got) != len(want) {
			t.Fatalf("%s: %d matches, want %d", label, len(got), len(want))
		}
		for i := range want {
			// Near-ties may come in either order; the score at each rank must agree.
			if got[i].ID != want[i].ID && math.Abs(float64(got[i].Score-want[i].Score)) > float64(scoreTolerance) {
				t.Errorf("%s: rank %d is %s (%v), want %s (%v)", label, i, got[i].ID, got[i].Score, want[i].ID, want[i].Score)
			}
		}
		return
	}
	if len(got) > len(want) {
		t.Errorf("%s: %d matches, at most %d pass the filter", label, len(got), len(want))
	}
	if recall := recallOf(got, want); recall < minRecall {
		t.Errorf("%s: recall %.3f below %.3f", label, recall, minRecall)
	}
}

func recallOf(got, want []index.Match) float64 {
	if len(want) == 0 {
		return 1
	}
	found := 0
	for _, w := range want {
		if slices.ContainsFunc(got, func(m index.Match) bool { return m.ID == w.ID }) {
			found++
		}
	}
	return float64(found) / float64(len(want))
}

func sameMetadata(a, b index.Metadata) bool {
	return a.Camera == b.Camera && a.Time.Equal(b.Time) && a.Track == b.Track && a.Frame == b.Frame &&
		a.Box == b.Box && a.Model == b.Model
}

// sameItem says whether got is want as the backend keeps it: the same vector, each value within
// the backend's rounding.
func (backend Backend) sameItem(got, want index.Item) bool {
	if got.ID != want.ID || len(got.Vector) != len(want.Vector) || !sameMetadata(got.Metadata, want.Metadata) {
		return false
	}
	for i, value := range want.Vector {
		if math.Abs(float64(got.Vector[i]-value)) > backend.Rounding*max(math.Abs(float64(value)), 0x1p-14) {
			return false
		}
	}
	return true
}

func mustNoError(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

func mustCount(t *testing.T, ctx context.Context, ix index.Index, version string, want int) {
	t.Helper()
	got, err := ix.Count(ctx, version)
	mustNoError(t, err, "Count(%q)", version)
	if got != want {
		t.Fatalf("Count(%q) = %d, want %d", version, got, want)
	}
}

func byID(items []index.Item) map[string]index.Item {
	m := make(map[string]index.Item, len(items))
	for _, item := range items {
		m[item.ID] = item
	}
	return m
}

func findVersion(versions []index.Version, name string) (index.Version, bool) {
	for _, version := range versions {
		if version.Name == name {
			return version, true
		}
	}
	return index.Version{}, false
}

func testVersions(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	if _, err := ix.Active(ctx); !errors.Is(err, index.ErrNoActiveVersion) {
		t.Fatalf("Active on a new index: %v, want ErrNoActiveVersion", err)
	}
	versions, err := ix.Versions(ctx)
	mustNoError(t, err, "Versions")
	if len(versions) != 0 {
		t.Fatalf("new index has versions %+v", versions)
	}
	mustNoError(t, ix.CreateVersion(ctx, "osnet-v1", 16), "CreateVersion")
	mustNoError(t, ix.CreateVersion(ctx, "osnet-v1", 16), "CreateVersion again with the same dim")
	if err := ix.CreateVersion(ctx, "osnet-v1", 32); err == nil {
		t.Fatal("CreateVersion of an existing version with another dim succeeded")
	}
	mustNoError(t, ix.CreateVersion(ctx, "resnet-v2", 32), "CreateVersion second")
	rng := rand.New(rand.NewPCG(1, 1))
	mustNoError(t, ix.Upsert(ctx, "osnet-v1", makeItems(rng, "a", 5, 16, "osnet-v1")), "Upsert")

	versions, err = ix.Versions(ctx)
	mustNoError(t, err, "Versions")
	if len(versions) != 2 {
		t.Fatalf("Versions = %+v, want 2", versions)
	}
	want := map[string]index.Version{
		"osnet-v1":  {Name: "osnet-v1", Dim: 16, Count: 5},
		"resnet-v2": {Name: "resnet-v2", Dim: 32, Count: 0},
	}
	for name, w := range want {
		got, ok := findVersion(versions, name)
		if !ok || got != w {
			t.Errorf("version %s = %+v (found %v), want %+v", name, got, ok, w)
		}
	}
	if _, err := ix.Active(ctx); !errors.Is(err, index.ErrNoActiveVersion) {
		t.Fatalf("Active before Activate: %v, want ErrNoActiveVersion", err)
	}
	if _, err := ix.Count(ctx, ""); !errors.Is(err, index.ErrNoActiveVersion) {
		t.Fatalf("Count of the active version before Activate: %v, want ErrNoActiveVersion", err)
	}
	if _, err := ix.Count(ctx, "missing"); !errors.Is(err, index.ErrNoVersion) {
		t.Fatalf("Count of a missing version: %v, want ErrNoVersion", err)
	}
	if err := ix.Upsert(ctx, "missing", makeItems(rng, "m", 1, 16, "missing")); !errors.Is(err, index.ErrNoVersion) {
		t.Fatalf("Upsert into a missing version: %v, want ErrNoVersion", err)
	}
	if _, err := ix.Search(ctx, "missing", index.Query{Vectors: [][]float32{randomVector(rng, 16)}, K: 1}); !errors.Is(err, index.ErrNoVersion) {
		t.Fatalf("Search of a missing version: %v, want ErrNoVersion", err)
	}
	if _, err := ix.Get(ctx, "missing", []string{"a-1"}); !errors.Is(err, index.ErrNoVersion) {
		t.Fatalf("Get from a missing version: %v, want ErrNoVersion", err)
	}
	if _, err := ix.Delete(ctx, "missing", []string{"a-1"}); !errors.Is(err, index.ErrNoVersion) {
		t.Fatalf("Delete from a missing version: %v, want ErrNoVersion", err)
	}
}

func testBadInput(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	for _, dim := range []int{0, -3} {
		if err := ix.CreateVersion(ctx, "bad-dim", dim); err == nil {
			t.Errorf("CreateVersion with dim %d succeeded", dim)
		}
	}
	if err := ix.CreateVersion(ctx, "", 8); err == nil {
		t.Error("CreateVersion with an empty name succeeded")
	}
	mustNoError(t, ix.CreateVersion(ctx, "v1", 8), "CreateVersion")
	rng := rand.New(rand.NewPCG(2, 2))
	items := makeItems(rng, "b", 3, 8, "v1")
	items[1].ID = ""
	if err := ix.Upsert(ctx, "v1", items); err == nil {
		t.Error("Upsert of an item with an empty id succeeded")
	}
	mustCount(t, ctx, ix, "v1", 0)
	mustNoError(t, ix.Upsert(ctx, "v1", nil), "Upsert of no items")
	good := makeItems(rng, "b", 3, 8, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", good), "Upsert")
	query := randomVector(rng, 8)
	for _, q := range []index.Query{
		{Vectors: nil, K: 3},
		{Vectors: [][]float32{query}, K: 0},
		{Vectors: [][]float32{query}, K: -1},
		{Vectors: [][]float32{query}, K: 3, Filter: index.Filter{From: epoch.Add(time.Hour), To: epoch}},
	} {
		if _, err := ix.Search(ctx, "v1", q); err == nil {
			t.Errorf("Search(%+v) succeeded", q)
		}
	}
	if err := ix.Activate(ctx, "missing"); !errors.Is(err, index.ErrNoVersion) {
		t.Errorf("Activate of a missing version: %v, want ErrNoVersion", err)
	}
	if err := ix.DropVersion(ctx, "missing"); !errors.Is(err, index.ErrNoVersion) {
		t.Errorf("DropVersion of a missing version: %v, want ErrNoVersion", err)
	}
}

func testDimension(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	mustNoError(t, ix.CreateVersion(ctx, "v1", 16), "CreateVersion")
	rng := rand.New(rand.NewPCG(3, 3))
	items := makeItems(rng, "d", 4, 16, "v1")
	items[2].Vector = randomVector(rng, 15)
	if err := ix.Upsert(ctx, "v1", items); !errors.Is(err, index.ErrDimension) {
		t.Fatalf("Upsert with a 15-value vector into a 16-dim gallery: %v, want ErrDimension", err)
	}
	// A rejected batch stores nothing, so a caller can retry it whole.
	mustCount(t, ctx, ix, "v1", 0)
	items[2].Vector = nil
	if err := ix.Upsert(ctx, "v1", items); !errors.Is(err, index.ErrDimension) {
		t.Fatalf("Upsert with a nil vector: %v, want ErrDimension", err)
	}
	good := makeItems(rng, "d", 4, 16, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", good), "Upsert")
	_, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{randomVector(rng, 16), randomVector(rng, 17)}, K: 2})
	if !errors.Is(err, index.ErrDimension) {
		t.Fatalf("Search with a 17-value query in a 16-dim gallery: %v, want ErrDimension", err)
	}
}

func testUpsertReplace(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	mustNoError(t, ix.CreateVersion(ctx, "v1", 24), "CreateVersion")
	rng := rand.New(rand.NewPCG(4, 4))
	items := makeItems(rng, "u", 20, 24, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")
	mustCount(t, ctx, ix, "v1", 20)

	replaced := items[7]
	replaced.Vector = randomVector(rng, 24)
	replaced.Metadata.Camera = "cam-new"
	replaced.Metadata.Time = epoch.Add(-time.Hour)
	replaced.Metadata.Box = [4]int32{1, 2, 3, 4}
	mustNoError(t, ix.Upsert(ctx, "v1", []index.Item{replaced}), "Upsert replacement")
	mustCount(t, ctx, ix, "v1", 20)
	items[7] = replaced

	got, err := ix.Get(ctx, "v1", []string{replaced.ID})
	mustNoError(t, err, "Get")
	if len(got) != 1 || !backend.sameItem(got[0], replaced) {
		t.Fatalf("Get after replace = %+v, want %+v", got, replaced)
	}
	results, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{replaced.Vector}, K: 1})
	mustNoError(t, err, "Search")
	if len(results) != 1 || len(results[0]) != 1 || results[0][0].ID != replaced.ID || results[0][0].Metadata.Camera != "cam-new" {
		t.Fatalf("Search for the replacement vector = %+v, want %s from cam-new", results, replaced.ID)
	}
	if math.Abs(float64(results[0][0].Score-1)) > scoreTolerance {
		t.Errorf("self-match score %v, want 1", results[0][0].Score)
	}

	// Within one batch the last item with an id wins.
	first, second := items[3], items[3]
	first.Vector = randomVector(rng, 24)
	second.Vector = randomVector(rng, 24)
	mustNoError(t, ix.Upsert(ctx, "v1", []index.Item{first, second}), "Upsert duplicate ids")
	mustCount(t, ctx, ix, "v1", 20)
	got, err = ix.Get(ctx, "v1", []string{second.ID})
	mustNoError(t, err, "Get")
	if len(got) != 1 || !backend.sameItem(got[0], second) {
		t.Fatalf("after a batch with one id twice, Get = %+v, want the later vector", got)
	}
}

func testSearchOrder(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	const dim = 32
	mustNoError(t, ix.CreateVersion(ctx, "v1", dim), "CreateVersion")
	rng := rand.New(rand.NewPCG(5, 5))
	items := makeItems(rng, "s", 500, dim, "v1")
	for start := 0; start < len(items); start += 100 {
		mustNoError(t, ix.Upsert(ctx, "v1", items[start:start+100]), "Upsert")
	}
	mustCount(t, ctx, ix, "v1", 500)
	m := byID(items)
	for _, exact := range []bool{true, false} {
		// An approximate search's recall is judged over the queries, as recall is defined: at
		// k=1 one query's miss is a recall of 0 for that query alone.
		recallSum := map[int]float64{}
		const queries = 10
		for q := 0; q < queries; q++ {
			query := randomVector(rng, dim)
			if q == 0 {
				query = items[123].Vector
			}
			for _, k := range []int{1, 10, 50} {
				results, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{query}, K: k, Exact: exact})
				mustNoError(t, err, "Search")
				if len(results) != 1 {
					t.Fatalf("Search with one query vector returned %d result lists", len(results))
				}
				want := bruteForce(items, query, k, index.Filter{})
				label := fmt.Sprintf("exact=%v query %d k=%d", exact, q, k)
				backend.checkMatches(t, label, results[0], want, m, query, index.Filter{}, exact || !backend.Approximate, 0)
				recallSum[k] += recallOf(results[0], want)
				if len(results[0]) != k && (exact || !backend.Approximate) {
					t.Errorf("%s: %d matches", label, len(results[0]))
				}
				if q == 0 && (len(results[0]) == 0 || results[0][0].ID != "s-123") {
					t.Errorf("%s: a stored vector's nearest neighbour is not itself: %+v", label, results[0])
				}
			}
		}
		for k, sum := range recallSum {
			if recall := sum / queries; recall < 0.9 {
				t.Errorf("exact=%v k=%d: recall %.3f over %d queries, below 0.9", exact, k, recall, queries)
			}
		}
	}
	// K above the gallery size returns the whole gallery.
	small := open(t, backend)
	mustNoError(t, small.CreateVersion(ctx, "v1", dim), "CreateVersion")
	mustNoError(t, small.Upsert(ctx, "v1", items[:7]), "Upsert")
	results, err := small.Search(ctx, "v1", index.Query{Vectors: [][]float32{items[0].Vector}, K: 100})
	mustNoError(t, err, "Search")
	if len(results[0]) != 7 {
		t.Errorf("K=100 over 7 items returned %d matches", len(results[0]))
	}
	// An empty gallery has no matches and no error.
	mustNoError(t, small.CreateVersion(ctx, "empty", dim), "CreateVersion")
	results, err = small.Search(ctx, "empty", index.Query{Vectors: [][]float32{items[0].Vector}, K: 5})
	mustNoError(t, err, "Search of an empty gallery")
	if len(results) != 1 || len(results[0]) != 0 {
		t.Errorf("Search of an empty gallery = %+v", results)
	}
}

func testSearchMultiVector(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	const dim = 16
	mustNoError(t, ix.CreateVersion(ctx, "v1", dim), "CreateVersion")
	rng := rand.New(rand.NewPCG(6, 6))
	items := makeItems(rng, "mv", 200, dim, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")
	m := byID(items)
	queries := [][]float32{items[10].Vector, randomVector(rng, dim), items[150].Vector, randomVector(rng, dim), items[42].Vector}
	for _, exact := range []bool{true, false} {
		results, err := ix.Search(ctx, "v1", index.Query{Vectors: queries, K: 5, Exact: exact})
		mustNoError(t, err, "Search")
		if len(results) != len(queries) {
			t.Fatalf("%d queries gave %d result lists", len(queries), len(results))
		}
		for i, query := range queries {
			backend.checkMatches(t, fmt.Sprintf("exact=%v query %d", exact, i), results[i], bruteForce(items, query, 5, index.Filter{}), m, query, index.Filter{}, exact || !backend.Approximate, 0.8)
		}
		for i, want := range map[int]string{0: "mv-10", 2: "mv-150", 4: "mv-42"} {
			if len(results[i]) == 0 || results[i][0].ID != want {
				t.Errorf("exact=%v: query %d top match %+v, want %s", exact, i, results[i], want)
			}
		}
	}
}

func testFilters(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	const dim = 16
	mustNoError(t, ix.CreateVersion(ctx, "v1", dim), "CreateVersion")
	rng := rand.New(rand.NewPCG(7, 7))
	items := makeItems(rng, "f", 400, dim, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")
	m := byID(items)
	query := items[17].Vector
	cases := []struct {
		name   string
		filter index.Filter
	}{
		{"cameras", index.Filter{Cameras: []string{"cam-1", "cam-3"}}},
		{"one camera", index.Filter{Cameras: []string{"cam-2"}}},
		{"unknown camera", index.Filter{Cameras: []string{"cam-9"}}},
		{"exclude", index.Filter{ExcludeCameras: []string{"cam-1"}}},
		{"include and exclude", index.Filter{Cameras: []string{"cam-0", "cam-1"}, ExcludeCameras: []string{"cam-1"}}},
		{"from", index.Filter{From: epoch.Add(300 * time.Second)}},
		{"to", index.Filter{To: epoch.Add(50 * time.Second)}},
		// Both bounds are inclusive: items 100..120, whose times fall exactly on the bounds.
		{"range", index.Filter{From: epoch.Add(100 * time.Second), To: epoch.Add(120 * time.Second)}},
		{"min score", index.Filter{MinScore: 0.3}},
		{"min score above all", index.Filter{MinScore: 1.01}},
		{"everything", index.Filter{Cameras: []string{"cam-0", "cam-2"}, ExcludeCameras: []string{"cam-2"}, From: epoch.Add(40 * time.Second), To: epoch.Add(360 * time.Second), MinScore: -0.2}},
	}
	for _, c := range cases {
		for _, exact := range []bool{true, false} {
			results, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{query}, K: 10, Filter: c.filter, Exact: exact})
			mustNoError(t, err, "Search %s", c.name)
			want := bruteForce(items, query, 10, c.filter)
			backend.checkMatches(t, fmt.Sprintf("%s exact=%v", c.name, exact), results[0], want, m, query, c.filter, exact || !backend.Approximate, 0.8)
		}
	}
	// The range bounds are inclusive: exactly 21 items fall in it.
	rangeFilter := index.Filter{From: epoch.Add(100 * time.Second), To: epoch.Add(120 * time.Second)}
	results, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{query}, K: 100, Filter: rangeFilter, Exact: true})
	mustNoError(t, err, "Search range")
	if len(results[0]) != 21 {
		t.Errorf("inclusive range of 21 items returned %d matches", len(results[0]))
	}
}

func testGet(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	mustNoError(t, ix.CreateVersion(ctx, "v1", 8), "CreateVersion")
	rng := rand.New(rand.NewPCG(8, 8))
	items := makeItems(rng, "g", 30, 8, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")
	got, err := ix.Get(ctx, "v1", []string{"g-29", "missing", "g-0", "g-15"})
	mustNoError(t, err, "Get")
	want := []index.Item{items[29], items[0], items[15]}
	if len(got) != len(want) {
		t.Fatalf("Get returned %d items, want %d", len(got), len(want))
	}
	for i := range want {
		if !backend.sameItem(got[i], want[i]) {
			t.Errorf("Get item %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	got, err = ix.Get(ctx, "v1", nil)
	mustNoError(t, err, "Get of no ids")
	if len(got) != 0 {
		t.Errorf("Get of no ids returned %d items", len(got))
	}
	// The returned vector is the caller's to change.
	got, err = ix.Get(ctx, "v1", []string{"g-3"})
	mustNoError(t, err, "Get")
	got[0].Vector[0] = 42
	again, err := ix.Get(ctx, "v1", []string{"g-3"})
	mustNoError(t, err, "Get")
	if !backend.sameItem(again[0], items[3]) {
		t.Error("changing a vector returned by Get changed the stored one")
	}
}

// inTracks is the items of items that belong to one of tracks, ordered by id.
func inTracks(items []index.Item, tracks ...index.TrackRef) []index.Item {
	var out []index.Item
	for _, item := range items {
		if slices.Contains(tracks, index.TrackRef{Camera: item.Metadata.Camera, Track: item.Metadata.Track}) {
			out = append(out, item)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// mustTrackItems checks that TrackItems returns exactly want, in any order.
func (backend Backend) mustTrackItems(t *testing.T, ctx context.Context, ix index.Index, version string, tracks []index.TrackRef, want []index.Item) {
	t.Helper()
	got, err := ix.TrackItems(ctx, version, tracks, 1000)
	mustNoError(t, err, "TrackItems(%v)", tracks)
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	if len(got) != len(want) {
		t.Fatalf("TrackItems(%v) returned %d items, want %d", tracks, len(got), len(want))
	}
	for i := range want {
		if !backend.sameItem(got[i], want[i]) {
			t.Errorf("TrackItems(%v) item %d = %+v, want %+v", tracks, i, got[i], want[i])
		}
	}
}

func testTrackItems(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	mustNoError(t, ix.CreateVersion(ctx, "v1", 8), "CreateVersion")
	rng := rand.New(rand.NewPCG(12, 12))
	items := makeItems(rng, "tr", 90, 8, "v1")
	// Three crops of one person in one camera's track 100, and untracked crops (track -1).
	for i := range 3 {
		items[i].Metadata.Camera, items[i].Metadata.Track = "cam-9", 100
	}
	items[3].Metadata.Track, items[4].Metadata.Track = -1, -1
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")

	long := index.TrackRef{Camera: "cam-9", Track: 100}
	other := index.TrackRef{Camera: items[40].Metadata.Camera, Track: items[40].Metadata.Track}
	untracked := index.TrackRef{Camera: items[3].Metadata.Camera, Track: -1}
	backend.mustTrackItems(t, ctx, ix, "v1", []index.TrackRef{long}, inTracks(items, long))
	if n := len(inTracks(items, long)); n != 3 {
		t.Fatalf("the test's track 100 has %d items, want 3", n)
	}
	// Track ids are per camera: the same id in another camera is another track.
	backend.mustTrackItems(t, ctx, ix, "v1", []index.TrackRef{long, other, {Camera: "cam-9", Track: other.Track}},
		inTracks(items, long, other))
	backend.mustTrackItems(t, ctx, ix, "v1", []index.TrackRef{{Camera: "nowhere", Track: 1}, {Camera: "cam-9", Track: 7}, untracked}, nil)
	backend.mustTrackItems(t, ctx, ix, "v1", nil, nil)

	limited, err := ix.TrackItems(ctx, "v1", []index.TrackRef{long}, 2)
	mustNoError(t, err, "TrackItems with a limit")
	if len(limited) != 2 || limited[0].Metadata.Track != 100 || limited[1].Metadata.Track != 100 {
		t.Errorf("TrackItems with limit 2 = %+v, want 2 items of track 100", limited)
	}

	// Deleting and replacing items moves them out of their tracks.
	_, err = ix.Delete(ctx, "v1", []string{items[0].ID})
	mustNoError(t, err, "Delete")
	moved := items[1]
	moved.Metadata.Track = other.Track
	moved.Metadata.Camera = other.Camera
	mustNoError(t, ix.Upsert(ctx, "v1", []index.Item{moved}), "Upsert")
	backend.mustTrackItems(t, ctx, ix, "v1", []index.TrackRef{long}, []index.Item{items[2]})
	backend.mustTrackItems(t, ctx, ix, "v1", []index.TrackRef{other}, inTracks(append(slices.Clone(items[2:]), moved), other))

	if _, err := ix.TrackItems(ctx, "missing", []index.TrackRef{long}, 10); !errors.Is(err, index.ErrNoVersion) {
		t.Errorf("TrackItems of a missing version: %v, want ErrNoVersion", err)
	}
}

func testDelete(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	mustNoError(t, ix.CreateVersion(ctx, "v1", 8), "CreateVersion")
	rng := rand.New(rand.NewPCG(9, 9))
	items := makeItems(rng, "x", 50, 8, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")
	n, err := ix.Delete(ctx, "v1", []string{"x-1", "x-2", "missing", "x-2"})
	mustNoError(t, err, "Delete")
	if n != 2 {
		t.Errorf("Delete of 2 existing ids (one asked twice) and 1 missing = %d, want 2", n)
	}
	mustCount(t, ctx, ix, "v1", 48)
	got, err := ix.Get(ctx, "v1", []string{"x-1", "x-2", "x-3"})
	mustNoError(t, err, "Get")
	if len(got) != 1 || got[0].ID != "x-3" {
		t.Errorf("Get after Delete = %+v, want only x-3", got)
	}
	results, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{items[1].Vector}, K: 50, Exact: true})
	mustNoError(t, err, "Search")
	for _, match := range results[0] {
		if match.ID == "x-1" || match.ID == "x-2" {
			t.Errorf("deleted %s is still found", match.ID)
		}
	}
	if len(results[0]) != 48 {
		t.Errorf("Search K=50 after Delete returned %d, want 48", len(results[0]))
	}
	n, err = ix.Delete(ctx, "v1", []string{"x-1"})
	mustNoError(t, err, "Delete again")
	if n != 0 {
		t.Errorf("deleting a deleted id counted %d", n)
	}
	// A deleted id can be inserted again.
	mustNoError(t, ix.Upsert(ctx, "v1", items[1:2]), "Upsert after Delete")
	mustCount(t, ctx, ix, "v1", 49)
	got, err = ix.Get(ctx, "v1", []string{"x-1"})
	mustNoError(t, err, "Get")
	if len(got) != 1 || !backend.sameItem(got[0], items[1]) {
		t.Errorf("re-inserted item = %+v", got)
	}
}

func testDeleteBefore(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	mustNoError(t, ix.CreateVersion(ctx, "v1", 8), "CreateVersion")
	rng := rand.New(rand.NewPCG(10, 10))
	items := makeItems(rng, "r", 100, 8, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")
	// Items 0..39 are older than epoch+40s; item 40 is at exactly that time and stays.
	n, err := ix.DeleteBefore(ctx, "v1", epoch.Add(40*time.Second))
	mustNoError(t, err, "DeleteBefore")
	if n != 40 {
		t.Errorf("DeleteBefore removed %d, want 40", n)
	}
	mustCount(t, ctx, ix, "v1", 60)
	got, err := ix.Get(ctx, "v1", []string{"r-39", "r-40"})
	mustNoError(t, err, "Get")
	if len(got) != 1 || got[0].ID != "r-40" {
		t.Errorf("Get after DeleteBefore = %+v, want only r-40", got)
	}
	results, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{items[5].Vector}, K: 100, Exact: true})
	mustNoError(t, err, "Search")
	if len(results[0]) != 60 {
		t.Errorf("Search after DeleteBefore returned %d, want 60", len(results[0]))
	}
	for _, match := range results[0] {
		if match.Metadata.Time.Before(epoch.Add(40 * time.Second)) {
			t.Errorf("expired %s is still found", match.ID)
		}
	}
	n, err = ix.DeleteBefore(ctx, "v1", epoch.Add(40*time.Second))
	mustNoError(t, err, "DeleteBefore again")
	if n != 0 {
		t.Errorf("second DeleteBefore removed %d", n)
	}
}

// testDeleteCameraBefore: one camera's old items go, every other camera's stay; with OpenAt, the
// deletion is still there after a reopen.
func testDeleteCameraBefore(t *testing.T, backend Backend) {
	ctx := testContext(t)
	state := t.TempDir()
	var ix index.Index
	if backend.OpenAt != nil {
		ix = backend.OpenAt(t, state)
	} else {
		ix = open(t, backend)
	}
	mustNoError(t, ix.CreateVersion(ctx, "v1", 8), "CreateVersion")
	items := makeItems(rand.New(rand.NewPCG(11, 11)), "c", 100, 8, "v1")
	mustNoError(t, ix.Upsert(ctx, "v1", items), "Upsert")
	// cam-1 holds items 1, 5, 9, ...; ten of them are older than epoch+40s.
	n, err := ix.DeleteCameraBefore(ctx, "v1", "cam-1", epoch.Add(40*time.Second))
	mustNoError(t, err, "DeleteCameraBefore")
	if n != 10 {
		t.Errorf("DeleteCameraBefore removed %d, want 10", n)
	}
	if n, err := ix.DeleteCameraBefore(ctx, "v1", "cam-9", epoch.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("DeleteCameraBefore of a camera without items: %d, %v", n, err)
	}
	check := func(ix index.Index) {
		t.Helper()
		mustCount(t, ctx, ix, "v1", 90)
		got, err := ix.Get(ctx, "v1", []string{"c-0", "c-1", "c-37", "c-41"})
		mustNoError(t, err, "Get")
		var ids []string
		for _, item := range got {
			ids = append(ids, item.ID)
		}
		sort.Strings(ids)
		if !slices.Equal(ids, []string{"c-0", "c-41"}) {
			t.Errorf("Get after DeleteCameraBefore = %v, want c-0 (another camera) and c-41 (newer)", ids)
		}
	}
	check(ix)
	if backend.OpenAt != nil {
		mustNoError(t, ix.Close(), "Close")
		reopened := backend.OpenAt(t, state)
		check(reopened)
		mustNoError(t, reopened.Close(), "Close")
	}
}

func testVersionIsolation(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	mustNoError(t, ix.CreateVersion(ctx, "v1", 8), "CreateVersion")
	mustNoError(t, ix.CreateVersion(ctx, "v2", 8), "CreateVersion")
	rng := rand.New(rand.NewPCG(11, 11))
	one := makeItems(rng, "same", 10, 8, "v1")
	two := makeItems(rng, "same", 4, 8, "v2")
	mustNoError(t, ix.Upsert(ctx, "v1", one), "Upsert v1")
	mustNoError(t, ix.Upsert(ctx, "v2", two), "Upsert v2")
	mustCount(t, ctx, ix, "v1", 10)
	mustCount(t, ctx, ix, "v2", 4)
	got, err := ix.Get(ctx, "v2", []string{"same-0", "same-5"})
	mustNoError(t, err, "Get")
	if len(got) != 1 || !backend.sameItem(got[0], two[0]) {
		t.Errorf("v2 Get = %+v, want only v2's same-0", got)
	}
	results, err := ix.Search(ctx, "v2", index.Query{Vectors: [][]float32{one[5].Vector}, K: 10, Exact: true})
	mustNoError(t, err, "Search")
	if len(results[0]) != 4 {
		t.Errorf("v2 search saw %d items, want 4", len(results[0]))
	}
	n, err := ix.Delete(ctx, "v2", []string{"same-1"})
	mustNoError(t, err, "Delete")
	if n != 1 {
		t.Errorf("Delete = %d", n)
	}
	mustCount(t, ctx, ix, "v1", 10)
}

func testActivate(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	rng := rand.New(rand.NewPCG(12, 12))
	mustNoError(t, ix.CreateVersion(ctx, "old", 8), "CreateVersion")
	mustNoError(t, ix.CreateVersion(ctx, "new", 12), "CreateVersion")
	old := makeItems(rng, "o", 20, 8, "old")
	fresh := makeItems(rng, "n", 30, 12, "new")
	mustNoError(t, ix.Upsert(ctx, "old", old), "Upsert")
	mustNoError(t, ix.Upsert(ctx, "new", fresh), "Upsert")

	mustNoError(t, ix.Activate(ctx, "old"), "Activate old")
	active, err := ix.Active(ctx)
	mustNoError(t, err, "Active")
	if active.Name != "old" || active.Dim != 8 || active.Count != 20 || !active.Active {
		t.Errorf("Active = %+v, want old/8/20/active", active)
	}
	mustCount(t, ctx, ix, "", 20)
	results, err := ix.Search(ctx, "", index.Query{Vectors: [][]float32{old[3].Vector}, K: 1})
	mustNoError(t, err, "Search active")
	if results[0][0].ID != "o-3" {
		t.Errorf("active search found %+v, want o-3", results[0])
	}
	if _, err := ix.Search(ctx, "", index.Query{Vectors: [][]float32{fresh[0].Vector}, K: 1}); !errors.Is(err, index.ErrDimension) {
		t.Errorf("12-value query against the 8-dim active gallery: %v, want ErrDimension", err)
	}

	// Upserts to the active gallery through "" land in it.
	extra := makeItems(rng, "o-extra", 1, 8, "old")
	mustNoError(t, ix.Upsert(ctx, "", extra), "Upsert active")
	mustCount(t, ctx, ix, "old", 21)

	mustNoError(t, ix.Activate(ctx, "new"), "Activate new")
	mustNoError(t, ix.Activate(ctx, "new"), "Activate new again")
	active, err = ix.Active(ctx)
	mustNoError(t, err, "Active")
	if active.Name != "new" || active.Dim != 12 || active.Count != 30 {
		t.Errorf("Active after switch = %+v", active)
	}
	versions, err := ix.Versions(ctx)
	mustNoError(t, err, "Versions")
	activeCount := 0
	for _, version := range versions {
		if version.Active {
			activeCount++
			if version.Name != "new" {
				t.Errorf("version %s marked active", version.Name)
			}
		}
	}
	if activeCount != 1 {
		t.Errorf("%d versions are marked active", activeCount)
	}
	mustCount(t, ctx, ix, "", 30)
	results, err = ix.Search(ctx, "", index.Query{Vectors: [][]float32{fresh[7].Vector}, K: 1})
	mustNoError(t, err, "Search new active")
	if results[0][0].ID != "n-7" || results[0][0].Metadata.Model != "new" {
		t.Errorf("search after activation found %+v, want n-7 of new", results[0])
	}
	// The old gallery stays intact for explicit lookups until it is dropped.
	mustCount(t, ctx, ix, "old", 21)
}

func testDropVersion(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	rng := rand.New(rand.NewPCG(13, 13))
	mustNoError(t, ix.CreateVersion(ctx, "old", 8), "CreateVersion")
	mustNoError(t, ix.CreateVersion(ctx, "new", 8), "CreateVersion")
	mustNoError(t, ix.Upsert(ctx, "old", makeItems(rng, "o", 10, 8, "old")), "Upsert")
	mustNoError(t, ix.Activate(ctx, "old"), "Activate")
	if err := ix.DropVersion(ctx, "old"); !errors.Is(err, index.ErrActiveVersion) {
		t.Fatalf("dropping the active version: %v, want ErrActiveVersion", err)
	}
	mustCount(t, ctx, ix, "old", 10)
	mustNoError(t, ix.Activate(ctx, "new"), "Activate new")
	mustNoError(t, ix.DropVersion(ctx, "old"), "DropVersion old")
	versions, err := ix.Versions(ctx)
	mustNoError(t, err, "Versions")
	if len(versions) != 1 || versions[0].Name != "new" {
		t.Errorf("Versions after drop = %+v", versions)
	}
	if _, err := ix.Count(ctx, "old"); !errors.Is(err, index.ErrNoVersion) {
		t.Errorf("Count of a dropped version: %v, want ErrNoVersion", err)
	}
	if err := ix.DropVersion(ctx, "old"); !errors.Is(err, index.ErrNoVersion) {
		t.Errorf("dropping twice: %v, want ErrNoVersion", err)
	}
	// A dropped name can be created again, empty, with another dimension.
	mustNoError(t, ix.CreateVersion(ctx, "old", 16), "CreateVersion after drop")
	mustCount(t, ctx, ix, "old", 0)
	mustNoError(t, ix.Upsert(ctx, "old", makeItems(rng, "o", 2, 16, "old")), "Upsert recreated")
	mustCount(t, ctx, ix, "old", 2)
}

func testConcurrent(t *testing.T, backend Backend) {
	ctx := testContext(t)
	ix := open(t, backend)
	const dim, writers, batches, batchSize = 16, 4, 20, 10
	mustNoError(t, ix.CreateVersion(ctx, "v1", dim), "CreateVersion")
	mustNoError(t, ix.Activate(ctx, "v1"), "Activate")
	all := make([][]index.Item, writers)
	for w := range all {
		all[w] = makeItems(rand.New(rand.NewPCG(14, uint64(w))), fmt.Sprintf("w%d", w), batches*batchSize, dim, "v1")
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				if err := ix.Upsert(ctx, "", all[w][b*batchSize:(b+1)*batchSize]); err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, b, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	var searchers sync.WaitGroup
	for s := 0; s < 2; s++ {
		searchers.Add(1)
		go func() {
			defer searchers.Done()
			rng := rand.New(rand.NewPCG(15, uint64(s)))
			for {
				select {
				case <-done:
					return
				default:
				}
				results, err := ix.Search(ctx, "", index.Query{Vectors: [][]float32{randomVector(rng, dim)}, K: 5})
				if err != nil {
					errs <- fmt.Errorf("searcher %d: %w", s, err)
					return
				}
				for i := 1; i < len(results[0]); i++ {
					if results[0][i].Score > results[0][i-1].Score+scoreTolerance {
						errs <- fmt.Errorf("searcher %d: scores not descending during upserts", s)
						return
					}
				}
				if _, err := ix.Count(ctx, ""); err != nil {
					errs <- fmt.Errorf("searcher %d count: %w", s, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	searchers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustCount(t, ctx, ix, "v1", writers*batches*batchSize)
	for w := range all {
		ids := make([]string, len(all[w]))
		for i, item := range all[w] {
			ids[i] = item.ID
		}
		got, err := ix.Get(ctx, "v1", ids)
		mustNoError(t, err, "Get")
		if len(got) != len(ids) {
			t.Fatalf("writer %d: Get returned %d of %d", w, len(got), len(ids))
		}
		for i := range got {
			if !backend.sameItem(got[i], all[w][i]) {
				t.Fatalf("writer %d item %d differs after concurrent upserts", w, i)
			}
		}
	}
}

func testPersistence(t *testing.T, backend Backend) {
	if backend.OpenAt == nil {
		t.Skip("backend has no OpenAt: persistence is not tested through this suite")
	}
	ctx := testContext(t)
	state := t.TempDir()
	rng := rand.New(rand.NewPCG(16, 16))
	old := makeItems(rng, "p", 300, 16, "old")
	fresh := makeItems(rng, "q", 40, 8, "new")

	ix := backend.OpenAt(t, state)
	mustNoError(t, ix.CreateVersion(ctx, "old", 16), "CreateVersion")
	mustNoError(t, ix.CreateVersion(ctx, "new", 8), "CreateVersion")
	mustNoError(t, ix.CreateVersion(ctx, "gone", 4), "CreateVersion")
	mustNoError(t, ix.Upsert(ctx, "old", old[:200]), "Upsert")
	mustNoError(t, ix.Upsert(ctx, "old", old[200:]), "Upsert")
	mustNoError(t, ix.Upsert(ctx, "new", fresh), "Upsert")
	replaced := old[5]
	replaced.Vector = randomVector(rng, 16)
	replaced.Metadata.Camera = "cam-moved"
	mustNoError(t, ix.Upsert(ctx, "old", []index.Item{replaced}), "Upsert replacement")
	old[5] = replaced
	_, err := ix.Delete(ctx, "old", []string{"p-6", "p-7"})
	mustNoError(t, err, "Delete")
	_, err = ix.DeleteBefore(ctx, "old", epoch.Add(3*time.Second)) // p-0, p-1, p-2
	mustNoError(t, err, "DeleteBefore")
	mustNoError(t, ix.Activate(ctx, "new"), "Activate")
	mustNoError(t, ix.DropVersion(ctx, "gone"), "DropVersion")
	mustNoError(t, ix.Close(), "Close")

	check := func(ix index.Index, round int) {
		t.Helper()
		active, err := ix.Active(ctx)
		mustNoError(t, err, "Active after reopen %d", round)
		if active.Name != "new" || active.Dim != 8 || active.Count != 40 {
			t.Errorf("reopen %d: Active = %+v", round, active)
		}
		versions, err := ix.Versions(ctx)
		mustNoError(t, err, "Versions")
		if len(versions) != 2 {
			t.Errorf("reopen %d: Versions = %+v, want old and new", round, versions)
		}
		mustCount(t, ctx, ix, "old", 295)
		ids := make([]string, len(old))
		for i, item := range old {
			ids[i] = item.ID
		}
		got, err := ix.Get(ctx, "old", ids)
		mustNoError(t, err, "Get")
		want := append(append([]index.Item{}, old[3:5]...), old[5])
		want = append(want, old[8:]...)
		if len(got) != len(want) {
			t.Fatalf("reopen %d: Get returned %d items, want %d", round, len(got), len(want))
		}
		for i := range want {
			if !backend.sameItem(got[i], want[i]) {
				t.Fatalf("reopen %d: item %s differs: %+v, want %+v", round, want[i].ID, got[i], want[i])
			}
		}
		// The replaced p-5 moved from cam-1's track 1 (its only item there) to cam-moved's.
		backend.mustTrackItems(t, ctx, ix, "old", []index.TrackRef{{Camera: "cam-1", Track: 1}}, nil)
		backend.mustTrackItems(t, ctx, ix, "old", []index.TrackRef{{Camera: "cam-moved", Track: 1}}, []index.Item{old[5]})
		backend.mustTrackItems(t, ctx, ix, "old", []index.TrackRef{{Camera: "cam-0", Track: 100}}, inTracks(old[8:], index.TrackRef{Camera: "cam-0", Track: 100}))
		results, err := ix.Search(ctx, "", index.Query{Vectors: [][]float32{fresh[9].Vector}, K: 3})
		mustNoError(t, err, "Search")
		if len(results[0]) == 0 || results[0][0].ID != "q-9" {
			t.Errorf("reopen %d: active search = %+v, want q-9 first", round, results[0])
		}
		results, err = ix.Search(ctx, "old", index.Query{Vectors: [][]float32{replaced.Vector}, K: 1})
		mustNoError(t, err, "Search")
		if len(results[0]) == 0 || results[0][0].ID != "p-5" || results[0][0].Metadata.Camera != "cam-moved" {
			t.Errorf("reopen %d: search for the replaced vector = %+v", round, results[0])
		}
	}
	ix = backend.OpenAt(t, state)
	check(ix, 1)
	// Writes after a reopen persist too.
	extra := makeItems(rng, "z", 5, 8, "new")
	mustNoError(t, ix.Upsert(ctx, "new", extra), "Upsert after reopen")
	mustNoError(t, ix.Close(), "Close")
	ix = backend.OpenAt(t, state)
	defer func() { mustNoError(t, ix.Close(), "Close") }()
	mustCount(t, ctx, ix, "new", 45)
	_, err = ix.Delete(ctx, "new", []string{"z-0", "z-1", "z-2", "z-3", "z-4"})
	mustNoError(t, err, "Delete")
	check(ix, 2)
}
