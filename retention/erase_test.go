package retention

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// erasureSite is what an erasure meets on a running site, in a crop store and two galleries:
//   - gate track 7: five crops indexed in both galleries, and a sixth stored 30 s after them that
//     the embedder has not reached yet;
//   - gate track 8, another person at the same time, and hall track 7, the same track number on
//     another camera;
//   - an untracked crop only in the store, and a crop only in the old gallery (its image lost).
type erasureSite struct {
	store   *cropstore.Local
	vectors index.Index
	// ids names the crops: "gate/7/0".."gate/7/5", "gate/8/0".., "hall/7/0"..,
	// "untracked", "vectors-only".
	ids map[string]string
}

func newErasureSite(t *testing.T, backend string) erasureSite {
	t.Helper()
	ctx := context.Background()
	store, vectors := emptySite(t, backend)
	site := erasureSite{store: store, vectors: vectors, ids: map[string]string{}}
	frame := int64(0)
	add := func(name, camera string, at time.Time, track int64, stored bool, galleries ...string) {
		frame++
		id := cropstore.NewID(camera, at, frame, 0)
		site.ids[name] = id
		if stored {
			record := cropstore.CropRecord{ID: id, Camera: camera, Time: at, Frame: frame, Track: track, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}
			if err := store.Put(ctx, record); err != nil {
				t.Fatal(err)
			}
		}
		item := index.Item{ID: id, Vector: []float32{1, 0}, Metadata: index.Metadata{Camera: camera, Time: at, Track: track, Frame: frame}}
		for _, version := range galleries {
			if err := vectors.Upsert(ctx, version, []index.Item{item}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 5 {
		at := start.Add(time.Duration(i) * time.Second)
		add("gate/7/"+string(rune('0'+i)), "gate", at, 7, true, "v1", "v2")
		add("gate/8/"+string(rune('0'+i)), "gate", at, 8, true, "v1", "v2")
		add("hall/7/"+string(rune('0'+i)), "hall", at, 7, true, "v1", "v2")
	}
	add("gate/7/5", "gate", start.Add(34*time.Second), 7, true)
	add("untracked", "gate", start.Add(time.Hour), 0, true)
	add("vectors-only", "hall", start.Add(time.Hour), 9, false, "v1")
	return site
}

func (s erasureSite) named(names ...string) []string {
	ids := make([]string, len(names))
	for i, name := range names {
		ids[i] = s.ids[name]
	}
	slices.Sort(ids)
	return ids
}

// The erasure tests run on both index backends.
var backends = []string{"embedded", "milvus"}

func TestFind(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testFind(t, backend) })
	}
}

func testFind(t *testing.T, backend string) {
	site := newErasureSite(t, backend)
	missingCrop := cropstore.NewID("gate", start.Add(-time.Hour), 99, 0)
	tests := []struct {
		name          string
		request       func() ErasureRequest
		want          []string
		missingCrops  []string
		missingTracks []index.TrackRef
	}{
		{
			name: "crops by id, wherever they are",
			request: func() ErasureRequest {
				return ErasureRequest{CropIDs: []string{site.ids["gate/8/2"], site.ids["untracked"], site.ids["vectors-only"], missingCrop}}
			},
			want:         site.named("gate/8/2", "untracked", "vectors-only"),
			missingCrops: []string{missingCrop},
		},
		{
			name:    "a track with its crop not yet embedded, not another camera's track of that number",
			request: func() ErasureRequest { return ErasureRequest{Tracks: []index.TrackRef{{Camera: "gate", Track: 7}}} },
			want:    site.named("gate/7/0", "gate/7/1", "gate/7/2", "gate/7/3", "gate/7/4", "gate/7/5"),
		},
		{
			name: "a track and a crop of it, counted once, and a track that is nowhere",
			request: func() ErasureRequest {
				return ErasureRequest{CropIDs: []string{site.ids["hall/7/1"]}, Tracks: []index.TrackRef{{Camera: "hall", Track: 7}, {Camera: "hall", Track: 8}}}
			},
			want:          site.named("hall/7/0", "hall/7/1", "hall/7/2", "hall/7/3", "hall/7/4"),
			missingTracks: []index.TrackRef{{Camera: "hall", Track: 8}},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			found, err := Find(context.Background(), site.store, site.vectors, test.request())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(found.CropIDs, test.want) {
				t.Errorf("found %q, want %q", found.CropIDs, test.want)
			}
			if !slices.Equal(found.MissingCrops, test.missingCrops) || !slices.Equal(found.MissingTracks, test.missingTracks) {
				t.Errorf("missing crops %q and tracks %v, want %q and %v", found.MissingCrops, found.MissingTracks, test.missingCrops, test.missingTracks)
			}
		})
	}
	// Finding is a dry run.
	if crops, v1, v2 := erasureCounts(t, site); crops != 17 || v1 != 16 || v2 != 15 {
		t.Errorf("Find changed the site: %d crops, %d and %d vectors", crops, v1, v2)
	}
}

func erasureCounts(t *testing.T, site erasureSite) (crops, v1, v2 int) {
	t.Helper()
	return count(t, site.store, site.vectors)
}

func TestErase(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testErase(t, backend) })
	}
}

func testErase(t *testing.T, backend string) {
	ctx := context.Background()
	site := newErasureSite(t, backend)
	found, err := Find(ctx, site.store, site.vectors, ErasureRequest{
		CropIDs: []string{site.ids["vectors-only"]},
		Tracks:  []index.TrackRef{{Camera: "gate", Track: 7}},
	})
	if err != nil {
		t.Fatal(err)
	}
	erased, err := Erase(ctx, site.store, site.vectors, found.CropIDs)
	if err != nil {
		t.Fatal(err)
	}
	// Five crops of the track in each gallery and the vectors-only crop's one; six images.
	if erased != (Erased{Vectors: 11, Crops: 6}) {
		t.Errorf("erased %+v, want 11 vectors and 6 crops", erased)
	}
	if crops, v1, v2 := erasureCounts(t, site); crops != 11 || v1 != 10 || v2 != 10 {
		t.Errorf("left %d crops, %d and %d vectors; want 11, 10 and 10", crops, v1, v2)
	}
	for _, id := range found.CropIDs {
		if _, err := site.store.Metadata(ctx, id); err == nil {
			t.Errorf("crop %s still in the store", id)
		}
		for _, version := range []string{"v1", "v2"} {
			if items, _ := site.vectors.Get(ctx, version, []string{id}); len(items) > 0 {
				t.Errorf("crop %s still in gallery %s", id, version)
			}
		}
	}
	// The other person, seen at the same time on the same camera, is untouched.
	for _, id := range site.named("gate/8/0", "gate/8/4", "hall/7/0") {
		if _, err := site.store.Metadata(ctx, id); err != nil {
			t.Errorf("crop %s of another track was erased: %v", id, err)
		}
	}
	// Erasing again finds nothing left and is not an error.
	again, err := Erase(ctx, site.store, site.vectors, found.CropIDs)
	if err != nil || again != (Erased{}) {
		t.Errorf("erasing again: %+v, %v; want nothing and no error", again, err)
	}
}

// TestFindAgain: once a track's vectors are erased, a crop of it stored afterwards, and not yet
// embedded, is found only by a second look that knows when the track was seen (Found.Seen).
func TestFindAgain(t *testing.T) {
	ctx := context.Background()
	site := newErasureSite(t, "embedded")
	track := index.TrackRef{Camera: "gate", Track: 7}
	first, err := Find(ctx, site.store, site.vectors, ErasureRequest{Tracks: []index.TrackRef{track}})
	if err != nil {
		t.Fatal(err)
	}
	if seen := first.Seen[track]; !seen.First.Equal(start) || !seen.Last.Equal(start.Add(4*time.Second)) {
		t.Fatalf("seen %+v; want the span of the track's indexed crops", seen)
	}
	if _, err := Erase(ctx, site.store, site.vectors, first.CropIDs); err != nil {
		t.Fatal(err)
	}
	at := start.Add(70 * time.Second)
	late := cropstore.CropRecord{ID: cropstore.NewID("gate", at, 900, 0), Camera: "gate", Time: at, Frame: 900, Track: 7, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}
	if err := site.store.Put(ctx, late); err != nil {
		t.Fatal(err)
	}
	blind, err := Find(ctx, site.store, site.vectors, ErasureRequest{Tracks: []index.TrackRef{track}})
	if err != nil || len(blind.CropIDs) != 0 || len(blind.MissingTracks) != 1 {
		t.Fatalf("without Seen: %+v, %v; want the track missing", blind, err)
	}
	again, err := Find(ctx, site.store, site.vectors, ErasureRequest{Tracks: []index.TrackRef{track},
		Seen: map[index.TrackRef]Span{track: {First: first.Seen[track].First, Last: at}}})
	if err != nil || !slices.Equal(again.CropIDs, []string{late.ID}) || len(again.MissingTracks) != 0 {
		t.Fatalf("with Seen: %+v, %v; want the late crop %s", again, err, late.ID)
	}
}

// TestFindUnindexedTrack: a track no gallery has yet (the embedder lags, or dead-lettered its
// crops) is found in the store when its crops are of the minutes before the request, or of the
// first minutes of its tracker's session; further off, it is missing.
func TestFindUnindexedTrack(t *testing.T) {
	ctx := context.Background()
	site := newErasureSite(t, "embedded")
	sessionTrack := cropstore.TrackID(start.Add(-time.Hour), 3)
	put := func(at time.Time, track int64) string {
		id := cropstore.NewID("gate", at, at.Unix(), 1)
		record := cropstore.CropRecord{ID: id, Camera: "gate", Time: at, Frame: at.Unix(), Track: track, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}
		if err := site.store.Put(ctx, record); err != nil {
			t.Fatal(err)
		}
		return id
	}
	recent := []string{put(start.Add(30*time.Second), 11), put(start.Add(90*time.Second), 11)}
	fromSessionStart := []string{put(start.Add(-time.Hour+time.Minute), sessionTrack)}
	slices.Sort(recent)
	tests := []struct {
		name          string
		track         int64
		now           time.Time
		galleriesOnly bool
		want          []string
		missing       bool
	}{
		{"stored in the minutes before the request", 11, start.Add(5 * time.Minute), false, recent, false},
		{"stored an hour before the request", 11, start.Add(95 * time.Minute), false, nil, true},
		{"stored in its session's first minutes", sessionTrack, start.Add(24 * time.Hour), false, fromSessionStart, false},
		{"looked for through the galleries only", 11, start.Add(5 * time.Minute), true, nil, true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			track := index.TrackRef{Camera: "gate", Track: test.track}
			request := ErasureRequest{Tracks: []index.TrackRef{track}, Now: test.now, GalleriesOnly: test.galleriesOnly}
			found, err := Find(ctx, site.store, site.vectors, request)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(found.CropIDs, test.want) || (len(found.MissingTracks) == 1) != test.missing {
				t.Errorf("found %q, missing %v; want %q, missing %v", found.CropIDs, found.MissingTracks, test.want, test.missing)
			}
		})
	}
}
