package embedded

import (
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reid-project/reid/index"
)

// record is one slot's metadata. Camera and model names are interned: a filter compares codes.
type record struct {
	id     string
	camera uint32
	model  uint32
	nanos  int64
	track  int64
	frame  int64
	box    [4]int32
}

// gallery is one model version's items in memory. It is not safe for concurrent use: the owning
// version's lock guards it (searches share it, writes hold it alone).
type gallery struct {
	dim     int
	vectors vectorStore
	records []record
	alive   []bool
	slots   map[string]uint32
	free    []uint32
	live    int
	names   []string
	codes   map[string]uint32
	// tracks lists the live slots of each track (negative track ids are untracked and not listed).
	tracks map[trackKey][]uint32
	// graph is the HNSW graph in approximate mode, nil in exact mode. A graph's nodes keep their
	// slots, so with a graph a replaced or deleted slot stays as a tombstone instead of being reused.
	graph *hnsw
	// linkedSinceRepair counts graph inserts since the graph was last repaired (see linkGraph).
	linkedSinceRepair int
	// frozen marks the vector blocks a snapshot being written still reads (see freeze): a write
	// into one copies the block first.
	frozen []bool
}

// newGallery makes an empty gallery of dim-d vectors, kept in binary16 with half.
func newGallery(dim int, half bool, graphOptions *hnswOptions) *gallery {
	g := &gallery{dim: dim, vectors: vectorStore{dim: dim, half: half},
		slots: map[string]uint32{}, codes: map[string]uint32{}, tracks: map[trackKey][]uint32{}}
	if graphOptions != nil {
		g.graph = newHNSW(*graphOptions, &g.vectors)
	}
	return g
}

// freeze returns a copy of the gallery as it is now, for a snapshot to write while writes go on.
// Records, names and the graph are copied (a few hundred bytes per slot); the vectors, nearly all
// of the memory, are shared, and a write into a shared block copies that block first (copy on
// write), so the copy stays as it was. Call it with writes excluded; call thaw when done.
func (g *gallery) freeze() *gallery {
	view := &gallery{
		dim:     g.dim,
		vectors: g.vectors.share(),
		records: slices.Clone(g.records),
		alive:   slices.Clone(g.alive),
		live:    g.live,
		names:   slices.Clone(g.names),
	}
	if g.graph != nil {
		view.graph = g.graph.clone(&view.vectors)
	}
	g.frozen = make([]bool, g.vectors.blocks())
	for i := range g.frozen {
		g.frozen[i] = true
	}
	return view
}

// thaw ends copy on write; call it with writes excluded.
func (g *gallery) thaw() { g.frozen = nil }

// thawBlock gives slot's block its own copy if a snapshot still reads the shared one.
func (g *gallery) thawBlock(slot uint32) {
	if block := int(slot >> blockShift); block < len(g.frozen) && g.frozen[block] {
		g.vectors.copyBlock(block)
		g.frozen[block] = false
	}
}

// trackKey is a track with its camera interned.
type trackKey struct {
	camera uint32
	track  int64
}

// link and unlink keep g.tracks in step with the live records.
func (g *gallery) link(slot uint32) {
	r := &g.records[slot]
	if r.track >= 0 {
		key := trackKey{r.camera, r.track}
		g.tracks[key] = append(g.tracks[key], slot)
	}
}

func (g *gallery) unlink(slot uint32) {
	r := &g.records[slot]
	if r.track < 0 {
		return
	}
	key := trackKey{r.camera, r.track}
	slots := g.tracks[key]
	if i := slices.Index(slots, slot); i >= 0 {
		slots[i] = slots[len(slots)-1]
		slots = slots[:len(slots)-1]
	}
	if len(slots) == 0 {
		delete(g.tracks, key)
	} else {
		g.tracks[key] = slots
	}
}

// trackSlots appends the live slots of the named tracks to slots, stopping at limit.
func (g *gallery) trackSlots(tracks []index.TrackRef, limit int, slots []uint32) []uint32 {
	for _, ref := range tracks {
		camera, ok := g.codes[ref.Camera]
		if !ok {
			continue
		}
		for _, slot := range g.tracks[trackKey{camera, ref.Track}] {
			if len(slots) >= limit {
				return slots
			}
			slots = append(slots, slot)
		}
	}
	return slots
}

func (g *gallery) intern(name string) uint32 {
	if code, ok := g.codes[name]; ok {
		return code
	}
	code := uint32(len(g.names))
	g.names = append(g.names, name)
	g.codes[name] = code
	return code
}

// linkGraph links slots into the graph and, once the inserts since the last repair reach a
// twentieth of the gallery, repairs it: a walk of every node per twentieth keeps the cost at a few
// hundred link reads per insert, far below the insert's own search.
func (g *gallery) linkGraph(slots []uint32) {
	g.graph.insertParallel(slots, len(g.records))
	g.linkedSinceRepair += len(slots)
	if g.linkedSinceRepair >= max(1024, g.live/20) {
		g.repairGraph()
	}
}

// repairGraph makes every live node reachable again (hnsw.repair).
func (g *gallery) repairGraph() int {
	g.linkedSinceRepair = 0
	return g.graph.repair(g.alive, len(g.records))
}

// newSlot returns a free slot, growing storage by a block when needed. Slots of deleted or
// replaced items are reused, in both modes: with a graph the reused node is linked again from
// scratch (nodes that pointed to the old one keep the link, now to the new item, as hnswlib's
// replace_deleted does), except the entry point's slot, where every insert starts.
func (g *gallery) newSlot() uint32 {
	if n := len(g.free); n > 0 {
		i := n - 1
		if g.graph != nil && int64(g.free[i]) == g.graph.entry {
			i--
		}
		if i >= 0 {
			slot := g.free[i]
			g.free[i] = g.free[n-1]
			g.free = g.free[:n-1]
			return slot
		}
	}
	slot := uint32(len(g.records))
	if int(slot>>blockShift) >= g.vectors.blocks() {
		g.vectors.grow()
	}
	g.records = append(g.records, record{})
	g.alive = append(g.alive, false)
	return slot
}

// put stores one item and returns its slot and whether that slot is new to the graph.
func (g *gallery) put(item *decodedItem, vector []float32) (uint32, bool) {
	slot, exists := g.slots[item.id]
	if exists {
		g.unlink(slot)
	}
	fresh := !exists
	replaced, hasReplaced := slot, false
	if exists && g.graph != nil {
		// The old node is unlinked only when its slot is reused: until then searches walk through it.
		g.alive[slot] = false
		fresh, hasReplaced = true, true
	}
	if fresh {
		slot = g.newSlot()
		g.slots[item.id] = slot
		if !exists {
			g.live++
		}
	}
	if hasReplaced {
		g.free = append(g.free, replaced)
	}
	g.thawBlock(slot)
	g.vectors.set(slot, vector)
	g.records[slot] = record{
		id:     item.id,
		camera: g.intern(item.camera),
		model:  g.intern(item.model),
		nanos:  item.nanos,
		track:  item.track,
		frame:  item.frame,
		box:    item.box,
	}
	g.alive[slot] = true
	g.link(slot)
	return slot, fresh && g.graph != nil
}

func (g *gallery) remove(id string) bool {
	slot, ok := g.slots[id]
	if !ok {
		return false
	}
	delete(g.slots, id)
	g.unlink(slot)
	g.alive[slot] = false
	g.records[slot] = record{}
	g.free = append(g.free, slot)
	g.live--
	return true
}

// removeBefore removes the items older than nanos: of the camera whose code is camera, or of
// every camera when camera is negative.
func (g *gallery) removeBefore(nanos int64, camera int64) int {
	removed := 0
	for slot := range g.records {
		if g.alive[slot] && g.records[slot].nanos < nanos && (camera < 0 || int64(g.records[slot].camera) == camera) {
			g.remove(g.records[slot].id)
			removed++
		}
	}
	return removed
}

func (g *gallery) item(slot uint32) index.Item {
	return index.Item{
		ID:       g.records[slot].id,
		Vector:   slices.Clone(g.vectors.read(slot, nil)),
		Metadata: g.metadata(slot),
	}
}

func (g *gallery) metadata(slot uint32) index.Metadata {
	r := &g.records[slot]
	return index.Metadata{
		Camera: g.names[r.camera],
		Time:   nanosToTime(r.nanos),
		Track:  r.track,
		Frame:  r.frame,
		Box:    r.box,
		Model:  g.names[r.model],
	}
}

// compiledFilter is an index.Filter resolved against the gallery's interned cameras.
type compiledFilter struct {
	cameraAllowed []bool // by camera code; nil allows every camera
	from, to      int64
	minScore      float32
}

func clampNanos(t time.Time, unset int64) int64 {
	switch {
	case t.IsZero():
		return unset
	case t.Year() < 1678:
		return math.MinInt64 + 1
	case t.Year() > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

func (g *gallery) compile(filter index.Filter) compiledFilter {
	compiled := compiledFilter{
		from:     clampNanos(filter.From, math.MinInt64),
		to:       clampNanos(filter.To, math.MaxInt64),
		minScore: filter.MinScore,
	}
	if compiled.minScore == 0 || math.IsNaN(float64(compiled.minScore)) {
		compiled.minScore = float32(math.Inf(-1))
	}
	if len(filter.Cameras) > 0 || len(filter.ExcludeCameras) > 0 {
		compiled.cameraAllowed = make([]bool, len(g.names))
		for code, name := range g.names {
			compiled.cameraAllowed[code] = (len(filter.Cameras) == 0 || slices.Contains(filter.Cameras, name)) &&
				!slices.Contains(filter.ExcludeCameras, name)
		}
	}
	return compiled
}

// selective reports whether the filter restricts anything besides the score.
func (f *compiledFilter) selective() bool {
	return f.cameraAllowed != nil || f.from != math.MinInt64 || f.to != math.MaxInt64
}

// pass applies everything but the score, so that a rejected slot costs no dot product.
func (g *gallery) pass(f *compiledFilter, slot uint32) bool {
	if !g.alive[slot] {
		return false
	}
	r := &g.records[slot]
	if f.cameraAllowed != nil && !f.cameraAllowed[r.camera] {
		return false
	}
	return r.nanos >= f.from && r.nanos <= f.to
}

// candidate is one scored slot.
type candidate struct {
	score float32
	slot  uint32
}

// topK keeps the k best candidates in a min-heap (worst at the root).
type topK struct {
	k     int
	items []candidate
}

func (h *topK) worst() float32 { return h.items[0].score }
func (h *topK) full() bool     { return len(h.items) >= h.k }

func (h *topK) push(c candidate) {
	if len(h.items) < h.k {
		h.items = append(h.items, c)
		i := len(h.items) - 1
		for i > 0 {
			parent := (i - 1) / 2
			if !worse(h.items[i], h.items[parent]) {
				break
			}
			h.items[i], h.items[parent] = h.items[parent], h.items[i]
			i = parent
		}
		return
	}
	if !worse(h.items[0], c) {
		return
	}
	h.items[0] = c
	h.siftDown(0)
}

func (h *topK) siftDown(i int) {
	n := len(h.items)
	for {
		smallest, left, right := i, 2*i+1, 2*i+2
		if left < n && worse(h.items[left], h.items[smallest]) {
			smallest = left
		}
		if right < n && worse(h.items[right], h.items[smallest]) {
			smallest = right
		}
		if smallest == i {
			return
		}
		h.items[i], h.items[smallest] = h.items[smallest], h.items[i]
		i = smallest
	}
}

// worse orders candidates by score, then by slot so that results are deterministic.
func worse(a, b candidate) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return a.slot > b.slot
}

func sortBest(candidates []candidate) {
	sort.Slice(candidates, func(i, j int) bool { return worse(candidates[j], candidates[i]) })
}

// Exact search splits the slots into chunks that workers take in turn; each worker keeps a top-k
// heap per query and scores a tile of tileSlots vectors against every query before moving on,
// so a tile is read from memory once per batch of queries rather than once per query.
const (
	chunkSlots = 8192
	tileSlots  = 64
)

func (g *gallery) searchExact(queries [][]float32, k int, filter *compiledFilter) [][]candidate {
	n := len(g.records)
	chunks := (n + chunkSlots - 1) / chunkSlots
	workers := min(runtime.GOMAXPROCS(0), chunks)
	if workers < 1 {
		workers = 1
	}
	heaps := make([][]topK, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		heaps[w] = make([]topK, len(queries))
		for q := range queries {
			heaps[w][q] = topK{k: k, items: make([]candidate, 0, k)}
		}
		wg.Add(1)
		go func(mine []topK) {
			defer wg.Done()
			var passing [tileSlots]uint32
			for {
				chunk := int(next.Add(1) - 1)
				if chunk >= chunks {
					return
				}
				end := min((chunk+1)*chunkSlots, n)
				for tile := chunk * chunkSlots; tile < end; tile += tileSlots {
					count := 0
					for slot := tile; slot < min(tile+tileSlots, end); slot++ {
						if g.pass(filter, uint32(slot)) {
							passing[count] = uint32(slot)
							count++
						}
					}
					for q, query := range queries {
						heap := &mine[q]
						for _, slot := range passing[:count] {
							score := g.vectors.dot(query, slot)
							if score < filter.minScore {
								continue
							}
							if !heap.full() || score > heap.worst() {
								heap.push(candidate{score, slot})
							}
						}
					}
				}
			}
		}(heaps[w])
	}
	wg.Wait()
	results := make([][]candidate, len(queries))
	for q := range queries {
		merged := heaps[0][q]
		for w := 1; w < workers; w++ {
			for _, c := range heaps[w][q].items {
				merged.push(c)
			}
		}
		sortBest(merged.items)
		results[q] = merged.items
	}
	return results
}

// passFraction estimates the share of slots a filter keeps from a deterministic sample.
func (g *gallery) passFraction(filter *compiledFilter) float64 {
	n := len(g.records)
	if n == 0 {
		return 1
	}
	samples := min(n, 2000)
	step := max(1, n/samples)
	kept, seen := 0, 0
	for slot := 0; slot < n; slot += step {
		seen++
		if g.pass(filter, uint32(slot)) {
			kept++
		}
	}
	return float64(kept) / float64(seen)
}

// itemView is item without copying a float32 vector, for encoding under the lock; a binary16
// one is widened into scratch.
func (g *gallery) itemView(slot uint32, scratch []float32) index.Item {
	return index.Item{ID: g.records[slot].id, Vector: g.vectors.read(slot, scratch), Metadata: g.metadata(slot)}
}
