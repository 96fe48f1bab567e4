package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/reid-project/reid/index"
)

// clustered returns n normalised vectors around n/100 centres, like embeddings of many people.
func clustered(seed uint64, n, dim int) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	centres := make([][]float32, max(1, n/100))
	for i := range centres {
		centres[i] = make([]float32, dim)
		for j := range centres[i] {
			centres[i][j] = float32(rng.NormFloat64())
		}
		centres[i] = normalised(centres[i])
	}
	out := make([][]float32, n)
	for i := range out {
		centre := centres[rng.IntN(len(centres))]
		out[i] = make([]float32, dim)
		for j := range out[i] {
			out[i][j] = centre[j] + float32(rng.NormFloat64()*0.035)
		}
		out[i] = normalised(out[i])
	}
	return out
}

// recallAt10 is the share of the exact top 10 that the graph finds for each query, on average.
func recallAt10(t *testing.T, ix *Index, queries [][]float32) float64 {
	t.Helper()
	ctx := context.Background()
	hits := 0
	for _, query := range queries {
		approximate, err := ix.Search(ctx, "v", index.Query{Vectors: [][]float32{query}, K: 10})
		if err != nil {
			t.Fatal(err)
		}
		exact, err := ix.Search(ctx, "v", index.Query{Vectors: [][]float32{query}, K: 10, Exact: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, match := range approximate[0] {
			if slices.ContainsFunc(exact[0], func(m index.Match) bool { return m.ID == match.ID }) {
				hits++
			}
		}
	}
	return float64(hits) / float64(10*len(queries))
}

// TestHNSWRecall checks the graph against exact search on clustered data, through the index
// (batched upserts, parallel inserts) and again after a restart that loads the saved graph.
func TestHNSWRecall(t *testing.T) {
	const n, dim, queries = 6000, 128, 100
	vectors := clustered(3, n+queries, dim)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	options := Options{Mode: "hnsw", HNSWM: 16, EfConstruction: 100, EfSearch: 64}
	ix := openFor(t, dir, options)
	if err := ix.CreateVersion(ctx, "v", dim); err != nil {
		t.Fatal(err)
	}
	for start := 0; start < n; start += 500 {
		items := make([]index.Item, 0, 500)
		for i := start; i < start+500; i++ {
			items = append(items, index.Item{ID: fmt.Sprint(i), Vector: vectors[i]})
		}
		if err := ix.Upsert(ctx, "v", items); err != nil {
			t.Fatal(err)
		}
	}
	recall := func(ix *Index) float64 { return recallAt10(t, ix, vectors[n:n+queries]) }
	if r := recall(ix); r < 0.98 {
		t.Errorf("recall@10 %.3f below 0.98", r)
	}
	if err := ix.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix = openFor(t, dir, options)
	defer ix.Close()
	v, _ := ix.lookup(ctx, "v")
	if v.gallery.graph == nil || v.gallery.graph.entry < 0 {
		t.Fatal("graph not loaded")
	}
	if r := recall(ix); r < 0.98 {
		t.Errorf("recall@10 after restart %.3f below 0.98", r)
	}
}

func BenchmarkHNSWInsert(b *testing.B) {
	const n, dim = 5000, 512
	vectors := clustered(4, n, dim)
	for b.Loop() {
		g := newGallery(dim, false, &hnswOptions{m: 16, efConstruction: 200, efSearch: 128})
		slots := make([]uint32, n)
		for i, vector := range vectors {
			item := decodedItem{id: fmt.Sprint(i)}
			slots[i], _ = g.put(&item, vector)
		}
		g.graph.insertParallel(slots, n)
	}
}

// TestHNSWChurn deletes and replaces a third of the gallery three times over, as retention and
// re-embedding do, in hnsw mode: the slots of deleted items must be reused (memory stays
// bounded) and the graph must still find the true neighbours, before and after a restart.
func TestHNSWChurn(t *testing.T) {
	const n, dim, queries = 6000, 64, 100
	vectors := clustered(5, 3*n+queries, dim)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	options := Options{Mode: "hnsw", HNSWM: 16, EfConstruction: 100, EfSearch: 64, ExactBelow: -1}
	ix := openFor(t, dir, options)
	if err := ix.CreateVersion(ctx, "v", dim); err != nil {
		t.Fatal(err)
	}
	upsert := func(from, to int) {
		t.Helper()
		for start := from; start < to; start += 500 {
			items := make([]index.Item, 0, 500)
			for i := start; i < min(start+500, to); i++ {
				items = append(items, index.Item{ID: fmt.Sprint(i), Vector: vectors[i]})
			}
			if err := ix.Upsert(ctx, "v", items); err != nil {
				t.Fatal(err)
			}
		}
	}
	upsert(0, n)
	rng := rand.New(rand.NewPCG(9, 9))
	live := make([]int, n)
	for i := range live {
		live[i] = i
	}
	next := n
	for round := range 3 {
		// Delete a random third, add as many new items, and replace 200 vectors in place.
		rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
		var ids []string
		for _, id := range live[:n/3] {
			ids = append(ids, fmt.Sprint(id))
		}
		if _, err := ix.Delete(ctx, "v", ids); err != nil {
			t.Fatal(err)
		}
		live = live[n/3:]
		upsert(next, next+n/3)
		for i := next; i < next+n/3; i++ {
			live = append(live, i)
		}
		next += n / 3
		replace := make([]index.Item, 0, 200)
		for _, id := range live[:200] {
			replace = append(replace, index.Item{ID: fmt.Sprint(id), Vector: vectors[id]})
		}
		if err := ix.Upsert(ctx, "v", replace); err != nil {
			t.Fatal(err)
		}
		v, _ := ix.lookup(ctx, "v")
		if slots := len(v.gallery.records); slots > n+250 {
			t.Fatalf("round %d: %d slots for %d live items: deleted slots are not reused", round, slots, n)
		}
	}
	recall := func(ix *Index) float64 { return recallAt10(t, ix, vectors[3*n:3*n+queries]) }
	if v, _ := ix.lookup(ctx, "v"); unreachableLive(v.gallery) > 0 {
		t.Errorf("after churn %d live nodes no search reaches", unreachableLive(v.gallery))
	}
	r := recall(ix)
	t.Logf("recall@10 after churn %.3f", r)
	if r < 0.95 {
		t.Errorf("recall@10 after churn %.3f below 0.95", r)
	}
	if count, _ := ix.Count(ctx, "v"); count != n {
		t.Fatalf("%d live items, want %d", count, n)
	}
	if err := ix.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix = openFor(t, dir, options)
	defer ix.Close()
	if r := recall(ix); r < 0.95 {
		t.Errorf("recall@10 after churn and a restart %.3f below 0.95", r)
	}
	// Reuse goes on after the restart.
	v, _ := ix.lookup(ctx, "v")
	slots := len(v.gallery.records)
	if _, err := ix.Delete(ctx, "v", []string{fmt.Sprint(live[0])}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(ctx, "v", []index.Item{{ID: "after-restart", Vector: vectors[3*n]}}); err != nil {
		t.Fatal(err)
	}
	if len(v.gallery.records) != slots {
		t.Errorf("a write after the restart took a new slot (%d -> %d) although one was free", slots, len(v.gallery.records))
	}
}

// TestHNSWParallelInsertKeepsEveryNodeReachable builds graphs with parallel inserts and walks layer
// 0 from the entry point: a node no link leads to is never returned by any search. Linking each
// insert's layers top-down, and inserting in parallel into a graph of a few nodes, left about one
// node in 300 unreachable.
func TestHNSWParallelInsertKeepsEveryNodeReachable(t *testing.T) {
	// More workers than CPUs still interleave inserts; the race needs several goroutines.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	const n, dim, batch = 2000, 32, 500
	for trial := range 8 {
		vectors := uniform(uint64(trial), n, dim)
		g := newGallery(dim, false, &hnswOptions{m: 8, efConstruction: 64, efSearch: 64})
		slots := make([]uint32, n)
		for i, vector := range vectors {
			item := decodedItem{id: fmt.Sprint(i)}
			slots[i], _ = g.put(&item, vector)
		}
		for start := 0; start < n; start += batch {
			g.graph.insertParallel(slots[start:start+batch], start+batch)
		}
		if unreachable := unreachableLive(g); unreachable > 0 {
			t.Errorf("trial %d: %d of %d nodes unreachable on layer 0", trial, unreachable, n)
		}
	}
}

// uniform returns n normalised vectors spread evenly over the sphere: no clusters to navigate by.
func uniform(seed uint64, n, dim int) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, dim)
		for j := range out[i] {
			out[i][j] = float32(rng.NormFloat64())
		}
		out[i] = normalised(out[i])
	}
	return out
}

// unreachableLive counts the live nodes of g's graph that no walk of layer 0 from the entry point
// reaches: no search can return them.
func unreachableLive(g *gallery) int {
	reached := make([]bool, len(g.records))
	reached[g.graph.entry] = true
	stack := []uint32{uint32(g.graph.entry)}
	for len(stack) > 0 {
		slot := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		list := g.graph.links(slot, 0)
		for _, neighbour := range list[1 : 1+list[0]] {
			if !reached[neighbour] {
				reached[neighbour] = true
				stack = append(stack, neighbour)
			}
		}
	}
	unreachable := 0
	for slot, alive := range g.alive {
		if alive && !reached[slot] {
			unreachable++
		}
	}
	return unreachable
}

// TestOpenLinksStrandedNodes strands a node (no link leads to it, as earlier versions' parallel
// inserts and slot reuse could leave one), saves the graph and reopens it: the node must be
// linked again and found.
func TestOpenLinksStrandedNodes(t *testing.T) {
	const n, dim = 2000, 32
	vectors := uniform(11, n, dim)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	options := Options{Mode: "hnsw", HNSWM: 8, EfConstruction: 64, EfSearch: 64, ExactBelow: -1}
	ix := openFor(t, dir, options)
	if err := ix.CreateVersion(ctx, "v", dim); err != nil {
		t.Fatal(err)
	}
	items := make([]index.Item, n)
	for i := range items {
		items[i] = index.Item{ID: fmt.Sprint(i), Vector: vectors[i]}
	}
	if err := ix.Upsert(ctx, "v", items); err != nil {
		t.Fatal(err)
	}
	v, _ := ix.lookup(ctx, "v")
	graph := v.gallery.graph
	stranded := v.gallery.slots["777"]
	if int64(stranded) == graph.entry {
		t.Fatal("the chosen node is the entry point")
	}
	for slot := range uint32(n) {
		for level := 0; level <= int(graph.levels[slot]); level++ {
			list := graph.links(slot, level)
			kept := slices.DeleteFunc(slices.Clone(list[1:1+list[0]]), func(s uint32) bool { return s == stranded })
			list[0] = uint32(copy(list[1:], kept))
		}
	}
	found := func(ix *Index) bool {
		results, err := ix.Search(ctx, "v", index.Query{Vectors: [][]float32{vectors[777]}, K: 5})
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(results[0], func(m index.Match) bool { return m.ID == "777" })
	}
	if unreachableLive(v.gallery) != 1 || found(ix) {
		t.Fatalf("stranding did not take: %d unreachable, found %v", unreachableLive(v.gallery), found(ix))
	}
	if err := ix.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix = openFor(t, dir, options)
	defer ix.Close()
	v, _ = ix.lookup(ctx, "v")
	if unreachable := unreachableLive(v.gallery); unreachable != 0 {
		t.Errorf("%d nodes unreachable after reopening", unreachable)
	}
	if !found(ix) {
		t.Error("a stored item's own vector does not find it after reopening")
	}
}
