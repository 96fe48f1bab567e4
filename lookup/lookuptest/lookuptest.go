// Package lookuptest has in-memory test doubles of lookup's consumer interfaces (a brute-force
// index, a crop store, a colour-histogram embedder) and a synthetic gallery of person-like crops,
// for lookup's tests, the browser test and the load tool. None of it is meant for production.
package lookuptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// Index is a brute-force in-memory index of one version. It records the queries it receives.
type Index struct {
	mu      sync.RWMutex
	items   map[string]index.Item
	order   []string
	queries []index.Query
	// SearchErr, when set, is returned by Search.
	SearchErr error
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{items: map[string]index.Item{}} }

// Add inserts or replaces items.
func (x *Index) Add(items ...index.Item) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, item := range items {
		if _, ok := x.items[item.ID]; !ok {
			x.order = append(x.order, item.ID)
		}
		x.items[item.ID] = item
	}
}

// Queries returns the queries searched so far.
func (x *Index) Queries() []index.Query {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return append([]index.Query(nil), x.queries...)
}

// Search scores every item against each query vector.
func (x *Index) Search(ctx context.Context, version string, query index.Query) ([][]index.Match, error) {
	x.mu.Lock()
	x.queries = append(x.queries, query)
	x.mu.Unlock()
	if x.SearchErr != nil {
		return nil, x.SearchErr
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	dim := 0
	for _, id := range x.order {
		dim = len(x.items[id].Vector)
		break
	}
	if len(x.order) > 0 {
		if err := query.Validate(dim); err != nil {
			return nil, err
		}
	}
	results := make([][]index.Match, len(query.Vectors))
	for q, vector := range query.Vectors {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var matches []index.Match
		for _, id := range x.order {
			item := x.items[id]
			score := dot(vector, item.Vector)
			if !query.Filter.Keep(item.Metadata, score) {
				continue
			}
			matches = append(matches, index.Match{ID: id, Score: score, Metadata: item.Metadata})
		}
		sort.SliceStable(matches, func(i, j int) bool { return matches[i].Score > matches[j].Score })
		if len(matches) > query.K {
			matches = matches[:query.K]
		}
		results[q] = matches
	}
	return results, nil
}

// Get returns the items that exist, in the order asked.
func (x *Index) Get(ctx context.Context, version string, ids []string) ([]index.Item, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var items []index.Item
	for _, id := range ids {
		if item, ok := x.items[id]; ok {
			items = append(items, item)
		}
	}
	return items, ctx.Err()
}

// TrackItems returns the items of these tracks (negative track ids are untracked), up to limit.
func (x *Index) TrackItems(ctx context.Context, version string, tracks []index.TrackRef, limit int) ([]index.Item, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	wanted := map[index.TrackRef]bool{}
	for _, ref := range tracks {
		if ref.Track >= 0 {
			wanted[ref] = true
		}
	}
	var items []index.Item
	for _, id := range x.order {
		item := x.items[id]
		if len(items) < limit && wanted[index.TrackRef{Camera: item.Metadata.Camera, Track: item.Metadata.Track}] {
			items = append(items, item)
		}
	}
	return items, ctx.Err()
}

// Versions lists the one gallery, as the active version ("").
func (x *Index) Versions(ctx context.Context) ([]index.Version, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return []index.Version{{Name: "", Count: len(x.items), Active: true}}, ctx.Err()
}

// Delete removes items by id and returns how many existed.
func (x *Index) Delete(ctx context.Context, version string, ids []string) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	deleted := 0
	for _, id := range ids {
		if _, ok := x.items[id]; ok {
			delete(x.items, id)
			deleted++
		}
	}
	x.order = slices.DeleteFunc(x.order, func(id string) bool { _, ok := x.items[id]; return !ok })
	return deleted, ctx.Err()
}

func dot(a, b []float32) float32 {
	sum := float32(0)
	for i := range min(len(a), len(b)) {
		sum += a[i] * b[i]
	}
	return sum
}

// Store is an in-memory crop store.
type Store struct {
	mu       sync.RWMutex
	records  map[string]cropstore.CropRecord
	erasures []cropstore.Erasure
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{records: map[string]cropstore.CropRecord{}} }

// Put stores a record with its JPEG.
func (s *Store) Put(record cropstore.CropRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[record.ID] = record
}

func (s *Store) get(id string) (cropstore.CropRecord, error) {
	if _, err := cropstore.ParseID(id); err != nil {
		return cropstore.CropRecord{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	record, ok := s.records[id]
	if !ok {
		return cropstore.CropRecord{}, fmt.Errorf("%w: %s", cropstore.ErrNotFound, id)
	}
	return record, nil
}

// Metadata returns a record without its image.
func (s *Store) Metadata(ctx context.Context, id string) (cropstore.CropRecord, error) {
	record, err := s.get(id)
	record.JPEG = nil
	return record, err
}

// Image returns a record's JPEG.
func (s *Store) Image(ctx context.Context, id string) ([]byte, error) {
	record, err := s.get(id)
	return record.JPEG, err
}

// Delete removes a record; deleting a missing one is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, id)
	return ctx.Err()
}

// RecordErasure keeps erasure for Erasures. Put, a test's own, does not refuse its crops: a test
// plays the stage that stored one before it knew.
func (s *Store) RecordErasure(ctx context.Context, erasure cropstore.Erasure) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.erasures = append(s.erasures, erasure)
	return ctx.Err()
}

// Erasures returns the erasures recorded so far.
func (s *Store) Erasures(ctx context.Context) ([]cropstore.Erasure, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.erasures), ctx.Err()
}

// Cameras lists the cameras with crops, sorted.
func (s *Store) Cameras(ctx context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[string]bool{}
	var cameras []string
	for _, record := range s.records {
		if !seen[record.Camera] {
			seen[record.Camera] = true
			cameras = append(cameras, record.Camera)
		}
	}
	sort.Strings(cameras)
	return cameras, nil
}

// Walk visits records in camera, time, id order (time and id reversed with filter.Newest).
func (s *Store) Walk(ctx context.Context, filter cropstore.Filter, fn func(cropstore.CropRecord) error) error {
	s.mu.RLock()
	var records []cropstore.CropRecord
	for _, record := range s.records {
		if filter.Camera != "" && record.Camera != filter.Camera ||
			!filter.From.IsZero() && record.Time.Before(filter.From) ||
			!filter.To.IsZero() && record.Time.After(filter.To) {
			continue
		}
		record.JPEG = nil
		records = append(records, record)
	}
	s.mu.RUnlock()
	sort.Slice(records, func(i, j int) bool {
		a, b := records[i], records[j]
		if a.Camera != b.Camera {
			return a.Camera < b.Camera
		}
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time) != filter.Newest
		}
		return (a.ID < b.ID) != filter.Newest
	})
	for _, record := range records {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(record); err != nil {
			return err
		}
	}
	return nil
}

// ColorEmbedder embeds an image as the mean colour of its head, torso and leg bands (9 values,
// centred and L2-normalised): enough for synthetic people that differ by clothing colour.
type ColorEmbedder struct {
	mu    sync.Mutex
	calls int
}

// Calls is how many images have been embedded.
func (e *ColorEmbedder) Calls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// Embed returns each image's colour vector.
func (e *ColorEmbedder) Embed(ctx context.Context, images []image.Image) ([][]float32, error) {
	e.mu.Lock()
	e.calls += len(images)
	e.mu.Unlock()
	vectors := make([][]float32, len(images))
	for i, picture := range images {
		vectors[i] = ColorVector(picture)
	}
	return vectors, ctx.Err()
}

// ColorVector is the ColorEmbedder's vector of one image.
func ColorVector(img image.Image) []float32 {
	bounds := img.Bounds()
	var sums [3][3]float64
	var counts [3]float64
	bands := []float64{0.2, 0.55, 1.0}
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		fraction := float64(y-bounds.Min.Y) / float64(bounds.Dy())
		band := 0
		for band < 2 && fraction >= bands[band] {
			band++
		}
		// Only the middle half of each row: the figure, not the background.
		for x := bounds.Min.X + bounds.Dx()/4; x < bounds.Max.X-bounds.Dx()/4; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			sums[band][0] += float64(r) / 65535
			sums[band][1] += float64(g) / 65535
			sums[band][2] += float64(b) / 65535
			counts[band]++
		}
	}
	vector := make([]float32, 9)
	for band := range 3 {
		for channel := range 3 {
			if counts[band] > 0 {
				vector[band*3+channel] = float32(sums[band][channel]/counts[band] - 0.5)
			}
		}
	}
	return Normalize(vector)
}

// Normalize scales v to unit length in place and returns it.
func Normalize(v []float32) []float32 {
	sum := 0.0
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		v[0] = 1
		return v
	}
	scale := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= scale
	}
	return v
}

// Identity is a synthetic person: the colours of their clothes.
type Identity struct {
	Hair, Shirt, Trousers color.RGBA
}

// Identities returns n distinct synthetic people.
func Identities(n int, seed uint64) []Identity {
	random := rand.New(rand.NewPCG(seed, 1))
	palette := []color.RGBA{
		{200, 40, 40, 255}, {40, 90, 200, 255}, {40, 160, 70, 255}, {230, 200, 50, 255},
		{240, 240, 240, 255}, {30, 30, 30, 255}, {150, 60, 170, 255}, {240, 130, 30, 255},
		{110, 80, 50, 255}, {90, 200, 210, 255}, {130, 130, 130, 255}, {240, 150, 190, 255},
	}
	hair := []color.RGBA{{20, 15, 10, 255}, {90, 60, 30, 255}, {210, 180, 110, 255}, {150, 150, 150, 255}}
	people := make([]Identity, n)
	for i := range people {
		shirt := palette[i%len(palette)]
		trousers := palette[(i/len(palette)+i*5+3)%len(palette)]
		people[i] = Identity{Hair: hair[random.IntN(len(hair))], Shirt: shirt, Trousers: trousers}
	}
	return people
}

// Crop draws person as a 64x128 crop, varied by seed (pose, lighting, background), and encodes
// it as JPEG (or PNG when asPNG).
func Crop(person Identity, seed uint64, asPNG bool) []byte {
	random := rand.New(rand.NewPCG(seed, 7))
	const width, height = 64, 128
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	light := 0.8 + 0.4*random.Float64()
	background := uint8(90 + random.IntN(60))
	shade := func(c color.RGBA, amount float64) color.RGBA {
		scale := func(v uint8) uint8 { return uint8(math.Min(255, float64(v)*amount)) }
		return color.RGBA{scale(c.R), scale(c.G), scale(c.B), 255}
	}
	for y := range height {
		for x := range width {
			noise := uint8(random.IntN(12))
			img.Set(x, y, color.RGBA{background + noise, background + noise + 5, background + noise + 8, 255})
		}
	}
	sway := random.IntN(7) - 3
	fill := func(x0, y0, x1, y1 int, c color.RGBA) {
		for y := max(0, y0); y < min(height, y1); y++ {
			for x := max(0, x0); x < min(width, x1); x++ {
				// Vertical shading gives the figure some roundness.
				edge := 1 - 0.35*math.Abs(float64(x-(x0+x1)/2))/float64(max(1, (x1-x0)/2))
				img.Set(x, y, shade(c, light*edge))
			}
		}
	}
	skin := color.RGBA{225, 180, 150, 255}
	center := width/2 + sway
	fill(center-7, 6, center+7, 13, person.Hair)
	fill(center-6, 12, center+6, 25, skin)
	fill(center-14, 26, center+14, 70, person.Shirt)
	fill(center-19, 28, center-14, 64, person.Shirt)
	fill(center+14, 28, center+19, 64, person.Shirt)
	step := random.IntN(5)
	fill(center-12-step, 70, center-1, 120, person.Trousers)
	fill(center+1, 70, center+12+step, 120, person.Trousers)
	fill(center-13-step, 120, center-1, 125, color.RGBA{25, 25, 25, 255})
	fill(center+1, 120, center+13+step, 125, color.RGBA{25, 25, 25, 255})
	var buffer bytes.Buffer
	if asPNG {
		png.Encode(&buffer, img)
	} else {
		jpeg.Encode(&buffer, img, &jpeg.Options{Quality: 88})
	}
	return buffer.Bytes()
}

// Gallery is a synthetic multi-camera scene: each identity walks past every camera in turn, as a
// track of several crops.
type Gallery struct {
	Index      *Index
	Store      *Store
	Embedder   *ColorEmbedder
	Identities []Identity
	// Tracks maps each crop id to its identity number.
	Identity map[string]int
	// Crops lists every crop id in creation order.
	Crops []string
}

// GalleryOptions sizes a synthetic gallery.
type GalleryOptions struct {
	Cameras        []string
	Identities     int
	CropsPerTrack  int
	Start          time.Time
	Seed           uint64
	CameraInterval time.Duration
}

// NewGallery builds a gallery: for identity p on camera c, a track of CropsPerTrack crops one
// second apart, starting at Start + p*30s + c*CameraInterval.
func NewGallery(options GalleryOptions) (*Gallery, error) {
	if len(options.Cameras) == 0 || options.Identities < 1 || options.CropsPerTrack < 1 {
		return nil, errors.New("lookuptest: gallery needs cameras, identities and crops per track")
	}
	if options.CameraInterval == 0 {
		options.CameraInterval = 2 * time.Minute
	}
	gallery := &Gallery{
		Index: NewIndex(), Store: NewStore(), Embedder: &ColorEmbedder{},
		Identities: Identities(options.Identities, options.Seed), Identity: map[string]int{},
	}
	// Track ids as ingest makes them: a session's start second times TrackSession plus a number.
	track := cropstore.TrackID(options.Start, 1)
	for c, camera := range options.Cameras {
		for p, person := range gallery.Identities {
			start := options.Start.Add(time.Duration(p)*30*time.Second + time.Duration(c)*options.CameraInterval)
			for n := range options.CropsPerTrack {
				t := start.Add(time.Duration(n) * time.Second)
				frame := int64(t.Sub(options.Start) / (40 * time.Millisecond))
				id := cropstore.NewID(camera, t, frame, p)
				jpegBytes := Crop(person, options.Seed*1_000_003+uint64(len(gallery.Crops)), false)
				img, err := jpeg.Decode(bytes.NewReader(jpegBytes))
				if err != nil {
					return nil, err
				}
				gallery.Store.Put(cropstore.CropRecord{
					ID: id, Camera: camera, Time: t.UTC(), Frame: frame, Track: track,
					Box: cropstore.Box{X: 10 * p, Y: 20, Width: 64, Height: 128}, Score: 0.9, Detector: "synthetic", JPEG: jpegBytes,
				})
				gallery.Index.Add(index.Item{ID: id, Vector: ColorVector(img), Metadata: index.Metadata{
					Camera: camera, Time: t.UTC(), Track: track, Frame: frame, Model: "color",
				}})
				gallery.Identity[id] = p
				gallery.Crops = append(gallery.Crops, id)
			}
			track++
		}
	}
	return gallery, nil
}
