package embedded

import (
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// hnswOptions are the graph's parameters (Malkov and Yashunin, 2016): m links per node on the upper
// layers and 2m on layer 0, efConstruction candidates while inserting, efSearch while searching.
type hnswOptions struct {
	m, efConstruction, efSearch int
}

// hnsw is a hierarchical navigable small-world graph over a gallery's slots, by inner product.
//
// Inserts may run in parallel with each other (insertParallel): each node's links are guarded by
// its own lock and the entry point by mu. Searches run only while no insert does (the gallery's
// owner holds its write lock while inserting), so they read links without locks.
type hnsw struct {
	hnswOptions
	m0        int
	levelMult float64
	vectors   *vectorStore

	mu       sync.Mutex
	entry    int64 // -1: empty
	maxLevel int

	levels []uint8
	// links0 holds, per slot, a count then up to m0 neighbours on layer 0; upper holds, per slot,
	// the same (count then m) for layers 1..level.
	links0 []uint32
	upper  [][]uint32
	locks  []*[blockSize]sync.Mutex

	visitedPool sync.Pool
}

func newHNSW(options hnswOptions, vectors *vectorStore) *hnsw {
	return &hnsw{
		hnswOptions: options,
		m0:          2 * options.m,
		levelMult:   1 / math.Log(float64(options.m)),
		vectors:     vectors,
		entry:       -1,
	}
}

// grow makes room for slots below n; callers hold the gallery alone.
func (h *hnsw) grow(n int) {
	for len(h.levels) < n {
		h.levels = append(h.levels, 0)
		h.upper = append(h.upper, nil)
		h.links0 = append(h.links0, make([]uint32, h.m0+1)...)
	}
	for len(h.locks)*blockSize < n {
		h.locks = append(h.locks, new([blockSize]sync.Mutex))
	}
}

func (h *hnsw) lock(slot uint32) *sync.Mutex {
	return &h.locks[slot>>blockShift][slot&(blockSize-1)]
}

// links returns the neighbour list (count first) of slot on level.
// clone copies the graph's structure (not its locks or pools) for a snapshot to encode while the
// original goes on changing; vector reads the clone's vectors.
func (h *hnsw) clone(vectors *vectorStore) *hnsw {
	h.mu.Lock()
	entry, maxLevel := h.entry, h.maxLevel
	h.mu.Unlock()
	upper := make([][]uint32, len(h.upper))
	for slot, lists := range h.upper {
		upper[slot] = slices.Clone(lists)
	}
	return &hnsw{
		hnswOptions: h.hnswOptions, m0: h.m0, levelMult: h.levelMult, vectors: vectors,
		entry: entry, maxLevel: maxLevel,
		levels: slices.Clone(h.levels), links0: slices.Clone(h.links0), upper: upper,
	}
}

func (h *hnsw) links(slot uint32, level int) []uint32 {
	if level == 0 {
		return h.links0[int(slot)*(h.m0+1) : int(slot+1)*(h.m0+1)]
	}
	return h.upper[slot][(level-1)*(h.m+1) : level*(h.m+1)]
}

// randomLevel draws a node's top layer from a hash of its slot, so that the graph's shape does not
// depend on which goroutine inserted first and needs no shared random source.
func (h *hnsw) randomLevel(slot uint32) int {
	x := uint64(slot) + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	uniform := (float64(x>>11) + 0.5) / (1 << 53)
	level := int(-math.Log(uniform) * h.levelMult)
	return min(level, 15)
}

// visited marks nodes seen during one search with a generation number, so it is cleared in O(1).
type visited struct {
	marks      []uint32
	generation uint32
}

func (h *hnsw) getVisited(n int) *visited {
	v, _ := h.visitedPool.Get().(*visited)
	if v == nil {
		v = &visited{}
	}
	if len(v.marks) < n {
		v.marks = make([]uint32, n+n/4)
		v.generation = 0
	}
	v.generation++
	if v.generation == 0 {
		clear(v.marks)
		v.generation = 1
	}
	return v
}

func (v *visited) visit(slot uint32) bool {
	if v.marks[slot] == v.generation {
		return false
	}
	v.marks[slot] = v.generation
	return true
}

// maxHeap is a max-heap of candidates (best at the root): the frontier a search expands.
type maxHeap []candidate

func (q *maxHeap) push(c candidate) {
	*q = append(*q, c)
	items := *q
	i := len(items) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !worse(items[parent], items[i]) {
			break
		}
		items[i], items[parent] = items[parent], items[i]
		i = parent
	}
}

func (q *maxHeap) pop() candidate {
	items := *q
	top := items[0]
	last := len(items) - 1
	items[0] = items[last]
	items = items[:last]
	i := 0
	for {
		best, left, right := i, 2*i+1, 2*i+2
		if left < len(items) && worse(items[best], items[left]) {
			best = left
		}
		if right < len(items) && worse(items[best], items[right]) {
			best = right
		}
		if best == i {
			break
		}
		items[i], items[best] = items[best], items[i]
		i = best
	}
	*q = items
	return top
}

// searchLayer is the best-first search of one layer from entry points. accept, when not nil,
// decides which visited nodes may enter the results; others are still walked through. With lock
// set it copies each neighbour list under its node's lock (inserts run concurrently).
func (h *hnsw) searchLayer(query []float32, entries []candidate, ef, level int, accept func(uint32) bool, locked bool, seen *visited) []candidate {
	frontier := make(maxHeap, 0, ef*2)
	results := topK{k: ef, items: make([]candidate, 0, ef)}
	for _, entry := range entries {
		seen.visit(entry.slot)
		frontier.push(entry)
		if accept == nil || accept(entry.slot) {
			results.push(entry)
		}
	}
	var neighbours [256]uint32
	for len(frontier) > 0 {
		current := frontier.pop()
		if results.full() && current.score < results.worst() {
			break
		}
		list := h.links(current.slot, level)
		var count int
		if locked {
			mutex := h.lock(current.slot)
			mutex.Lock()
			count = copy(neighbours[:], list[1:1+list[0]])
			mutex.Unlock()
		} else {
			count = copy(neighbours[:], list[1:1+list[0]])
		}
		for _, neighbour := range neighbours[:count] {
			if !seen.visit(neighbour) {
				continue
			}
			score := h.vectors.dot(query, neighbour)
			if results.full() && score <= results.worst() {
				continue
			}
			frontier.push(candidate{score, neighbour})
			if accept == nil || accept(neighbour) {
				results.push(candidate{score, neighbour})
			}
		}
	}
	sortBest(results.items)
	return results.items
}

// selectNeighbours is the paper's heuristic: walking candidates from the best, keep one only if it
// is closer to the query than to every neighbour already kept. That spreads links across
// directions, which keeps clustered data navigable. candidates must be sorted best first.
func (h *hnsw) selectNeighbours(candidates []candidate, m int) []candidate {
	if len(candidates) <= m {
		return candidates
	}
	selected := make([]candidate, 0, m)
	var scratch []float32
	for _, c := range candidates {
		if len(selected) >= m {
			break
		}
		scratch = h.vectors.read(c.slot, scratch)
		good := true
		for _, s := range selected {
			if h.vectors.dot(scratch, s.slot) > c.score {
				good = false
				break
			}
		}
		if good {
			selected = append(selected, c)
		}
	}
	return selected
}

// insert links slot into the graph; n is the number of slots (for the visited marks).
func (h *hnsw) insert(slot uint32, n int) {
	level := h.randomLevel(slot)
	if len(h.upper[slot]) == level*(h.m+1) && h.levels[slot] == uint8(level) {
		// A reused slot (its level is a hash of the slot, so unchanged): other nodes may still
		// link to it and concurrent inserts read its lists, so they are emptied under its lock.
		mutex := h.lock(slot)
		mutex.Lock()
		h.links0[int(slot)*(h.m0+1)] = 0
		for l := 1; l <= level; l++ {
			h.upper[slot][(l-1)*(h.m+1)] = 0
		}
		mutex.Unlock()
	} else {
		// A fresh slot: nothing links to it yet.
		h.levels[slot] = uint8(level)
		h.links0[int(slot)*(h.m0+1)] = 0
		if level > 0 {
			h.upper[slot] = make([]uint32, level*(h.m+1))
		} else {
			h.upper[slot] = nil
		}
	}

	h.mu.Lock()
	if h.entry < 0 {
		h.entry, h.maxLevel = int64(slot), level
		h.mu.Unlock()
		return
	}
	entry, top := uint32(h.entry), h.maxLevel
	// A node that raises the top keeps mu until it is linked, so no search starts from it early.
	raisesTop := level > top
	if !raisesTop {
		h.mu.Unlock()
	}

	query := h.vectors.read(slot, nil)
	current := candidate{h.vectors.dot(query, entry), entry}
	for l := top; l > level; l-- {
		current = h.greedy(query, current, l, true)
	}
	seen := h.getVisited(n)
	defer h.visitedPool.Put(seen)
	entries := []candidate{current}
	// Every layer is searched before any link is written, and links are written from layer 0 up.
	// Other inserts reach this node on a layer only through its links there, and walk down from
	// it, so they find its lists below already complete. Linked top-down, a concurrent insert
	// could descend to it while its layer-0 list was still empty, take it as its only neighbour
	// and be left unreachable once that link was pruned (about one node in 300 on uniform data).
	chosen := make([][]candidate, min(level, top)+1)
	for l := min(level, top); l >= 0; l-- {
		if l != min(level, top) {
			seen.generation++
			if seen.generation == 0 {
				clear(seen.marks)
				seen.generation = 1
			}
		}
		found := h.searchLayer(query, entries, h.efConstruction, l, func(s uint32) bool { return s != slot }, true, seen)
		chosen[l] = h.selectNeighbours(found, h.m)
		if len(found) > 0 {
			entries = found
		}
	}
	for l, neighbours := range chosen {
		// A reused slot may still be reached through stale links and be linked to by a concurrent
		// insert before this point, so its chosen neighbours are added to the list, not written
		// over it.
		for _, neighbour := range neighbours {
			h.link(slot, neighbour.slot, neighbour.score, l)
		}
		for _, neighbour := range neighbours {
			h.link(neighbour.slot, slot, neighbour.score, l)
		}
	}
	if raisesTop {
		h.entry, h.maxLevel = int64(slot), level
		h.mu.Unlock()
	}
}

// link adds a reverse link from node to added, pruning node's list with the heuristic when full.
func (h *hnsw) link(node, added uint32, score float32, level int) {
	capacity := h.m
	if level == 0 {
		capacity = h.m0
	}
	mutex := h.lock(node)
	mutex.Lock()
	defer mutex.Unlock()
	list := h.links(node, level)
	count := int(list[0])
	for _, existing := range list[1 : 1+count] {
		if existing == added {
			return
		}
	}
	if count < capacity {
		list[1+count] = added
		list[0]++
		return
	}
	vector := h.vectors.read(node, nil)
	candidates := make([]candidate, 0, count+1)
	candidates = append(candidates, candidate{score, added})
	for _, existing := range list[1 : 1+count] {
		candidates = append(candidates, candidate{h.vectors.dot(vector, existing), existing})
	}
	sortBest(candidates)
	kept := h.selectNeighbours(candidates, capacity)
	list[0] = uint32(len(kept))
	for i, c := range kept {
		list[1+i] = c.slot
	}
}

// greedy walks one upper layer to the neighbour closest to query.
func (h *hnsw) greedy(query []float32, current candidate, level int, locked bool) candidate {
	var neighbours [256]uint32
	for changed := true; changed; {
		changed = false
		if int(h.levels[current.slot]) < level {
			return current
		}
		list := h.links(current.slot, level)
		var count int
		if locked {
			mutex := h.lock(current.slot)
			mutex.Lock()
			count = copy(neighbours[:], list[1:1+list[0]])
			mutex.Unlock()
		} else {
			count = copy(neighbours[:], list[1:1+list[0]])
		}
		for _, neighbour := range neighbours[:count] {
			if score := h.vectors.dot(query, neighbour); score > current.score {
				current = candidate{score, neighbour}
				changed = true
			}
		}
	}
	return current
}

// insertParallel links every slot in slots using all CPUs; n is the number of slots.
func (h *hnsw) insertParallel(slots []uint32, n int) {
	h.grow(n)
	// A slot freed and reused twice before its insert (replay, or one batch) is linked once.
	slots = slices.Compact(slices.Sorted(slices.Values(slots)))
	// Slots outside this batch are already in the graph. Until it holds efConstruction nodes,
	// inserts are linked one at a time: concurrent inserts into a graph of a few nodes cannot see
	// each other, choose one or two neighbours each and were sometimes left with no way in.
	for len(slots) > 0 && (h.entry < 0 || n-len(slots) < h.efConstruction) {
		h.insert(slots[0], n)
		slots = slots[1:]
	}
	workers := min(runtime.GOMAXPROCS(0), len(slots)/64+1)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(slots) {
					return
				}
				h.insert(slots[i], n)
			}
		}()
	}
	wg.Wait()
}

// repair gives each live node that no walk of layer 0 from the entry point reaches a link from
// the nearest live node that one does, and returns how many it linked. Such a node is never
// returned by a search. Reused slots are relinked from scratch, which drops their old links, so
// after enough churn a node can lose every way in; the heuristic's pruning can then decline to
// link it back, so the link goes into a list with room, not through link. The caller holds the
// gallery alone.
func (h *hnsw) repair(alive []bool, n int) int {
	if h.entry < 0 {
		return 0
	}
	reached := make([]bool, n)
	var stack []uint32
	walk := func(from uint32) {
		reached[from] = true
		stack = append(stack[:0], from)
		for len(stack) > 0 {
			slot := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			list := h.links(slot, 0)
			for _, neighbour := range list[1 : 1+list[0]] {
				if !reached[neighbour] {
					reached[neighbour] = true
					stack = append(stack, neighbour)
				}
			}
		}
	}
	walk(uint32(h.entry))
	repaired := 0
	var query []float32
	for slot := range uint32(n) {
		if !alive[slot] || reached[slot] {
			continue
		}
		query = h.vectors.read(slot, query)
		// The upper layers may lead to nodes layer 0 does not reach, so hosts are filtered.
		hosts := h.search(query, h.efConstruction, h.efConstruction, n, func(s uint32) bool {
			return reached[s] && alive[s]
		})
		for _, host := range hosts {
			list := h.links(host.slot, 0)
			if count := list[0]; int(count) < h.m0 {
				list[1+count] = slot
				list[0]++
				repaired++
				// What only this node led to is reached now too.
				walk(slot)
				break
			}
		}
	}
	return repaired
}

// search returns up to k accepted candidates for query, best first.
func (h *hnsw) search(query []float32, k, ef, n int, accept func(uint32) bool) []candidate {
	if h.entry < 0 {
		return nil
	}
	entry := uint32(h.entry)
	current := candidate{h.vectors.dot(query, entry), entry}
	for l := h.maxLevel; l > 0; l-- {
		current = h.greedy(query, current, l, false)
	}
	seen := h.getVisited(n)
	defer h.visitedPool.Put(seen)
	found := h.searchLayer(query, []candidate{current}, max(ef, k), 0, accept, false, seen)
	if len(found) > k {
		found = found[:k]
	}
	return found
}
