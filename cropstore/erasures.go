package cropstore

// A store keeps a record of what was erased on request (a person's right to erasure), so that
// no crop of it is stored again: a track still in view goes on sending crops, a dead letter can be
// replayed, a consumer group can be rewound, and every such crop would otherwise come back. The
// record lives with the crops, under the name
//
//	<root>/@erasures/<YYYYMMDDTHHMMSS.nnnnnnnnnZ>-<random>.json   one Erasure each
//
// because the crop store is what every stage of a site shares: no camera id has an '@', so the
// folder is never taken for a camera's. One file per erasure, never rewritten, lets servers on many
// machines record erasures side by side; a store reads the files written by others every
// ErasureRefresh.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Erasure is what one erasure request named: crops, and whole tracks (every crop of the track,
// including those yet to come).
type Erasure struct {
	Time    time.Time     `json:"time"`
	CropIDs []string      `json:"crop_ids,omitempty"`
	Tracks  []ErasedTrack `json:"tracks,omitempty"`
}

// ErasedTrack is one camera's track, as CropRecord.Camera and CropRecord.Track name it.
type ErasedTrack struct {
	Camera string `json:"camera"`
	Track  int64  `json:"track"`
}

// ErrErased is returned by Put for a crop that was erased, or is of an erased track: it must not
// be stored again, and no retry will change that.
var ErrErased = errors.New("crop store: erased on request")

// ErasureRefresh is how often a store reads the erasures other processes recorded: a crop of a
// track erased elsewhere may still be stored for this long.
const ErasureRefresh = 2 * time.Second

// ErasuresFolder is the folder of a store (a directory of a local one) that holds the record.
const ErasuresFolder = erasuresDir

const (
	erasuresDir = "@erasures"
	// erasureNameTime orders erasure files by when they were recorded.
	erasureNameTime = "20060102T150405.000000000Z"
	// erasureSkew is how far before the newest file seen a refresh lists again: a file named by
	// a slower clock, or written slowly, may land behind it. A clock further behind than this has
	// its erasures read by the processes that open the store after it wrote them.
	erasureSkew = 10 * time.Minute
)

// erasureFiles is how a store keeps its erasure files: names are under erasuresDir.
type erasureFiles interface {
	// listErasures returns the names of the files in erasuresDir that sort after startAfter
	// (a name in that folder; "" for all).
	listErasures(ctx context.Context, startAfter string) ([]string, error)
	read(ctx context.Context, name string) ([]byte, error)
	writeErasure(ctx context.Context, name string, content []byte) error
}

// erasures is a store's view of its erasure files, refreshed when older than ErasureRefresh.
type erasures struct {
	files   erasureFiles
	now     func() time.Time
	readers int // erasureReaders

	mu       sync.Mutex
	loadedAt time.Time
	seen     map[string]bool
	newest   time.Time
	crops    map[string]bool
	tracks   map[ErasedTrack]bool
	records  []Erasure
}

func newErasures(files erasureFiles) *erasures {
	return &erasures{files: files, now: time.Now, readers: erasureReaders, seen: map[string]bool{}, crops: map[string]bool{}, tracks: map[ErasedTrack]bool{}}
}

// record writes erasure as a new file and applies it at once, so this process stores none of it
// from now on. Ids that no crop can have are left out: no crop will ever be stored under them.
func (e *erasures) record(ctx context.Context, erasure Erasure) error {
	kept := Erasure{Time: erasure.Time.UTC()}
	if kept.Time.IsZero() {
		kept.Time = e.now().UTC()
	}
	for _, id := range erasure.CropIDs {
		if _, err := ParseID(id); err == nil {
			kept.CropIDs = append(kept.CropIDs, id)
		}
	}
	for _, track := range erasure.Tracks {
		if !validCamera(track.Camera) {
			return fmt.Errorf("%w: erased track %d: camera %q", ErrInvalidID, track.Track, track.Camera)
		}
		kept.Tracks = append(kept.Tracks, track)
	}
	content, err := json.Marshal(kept)
	if err != nil {
		return fmt.Errorf("crop store: %w", err)
	}
	var random [6]byte
	if _, err := rand.Read(random[:]); err != nil {
		return fmt.Errorf("crop store: %w", err)
	}
	name := kept.Time.Format(erasureNameTime) + "-" + hex.EncodeToString(random[:]) + ".json"
	if err := e.files.writeErasure(ctx, name, content); err != nil {
		return fmt.Errorf("crop store: recording an erasure: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.apply(name, kept)
	return nil
}

// erased says whether record's crop, or its track, was erased.
func (e *erasures) erased(ctx context.Context, record CropRecord) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.loadedAt.IsZero() || e.now().Sub(e.loadedAt) >= ErasureRefresh {
		if err := e.refresh(ctx); err != nil {
			return false, err
		}
	}
	return e.crops[record.ID] || e.tracks[ErasedTrack{Camera: record.Camera, Track: record.Track}], nil
}

// all returns every erasure recorded, oldest first.
func (e *erasures) all(ctx context.Context) ([]Erasure, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.refresh(ctx); err != nil {
		return nil, err
	}
	records := slices.Clone(e.records)
	slices.SortStableFunc(records, func(a, b Erasure) int { return a.Time.Compare(b.Time) })
	return records, nil
}

// refresh reads the files recorded since the last refresh (and some before: erasureSkew). A file
// that cannot be read or parsed is an error, not skipped: storing crops that someone asked to be
// erased is worse than storing none until the file is mended.
func (e *erasures) refresh(ctx context.Context) error {
	startAfter := ""
	if !e.newest.IsZero() {
		startAfter = e.newest.Add(-erasureSkew).Format(erasureNameTime)
	}
	names, err := e.files.listErasures(ctx, startAfter)
	if err != nil {
		return fmt.Errorf("crop store: reading erasures: %w", err)
	}
	var unread []string
	for _, name := range names {
		if !e.seen[name] && strings.HasSuffix(name, ".json") {
			unread = append(unread, name)
		}
	}
	read, err := e.readAll(ctx, unread)
	if err != nil {
		return err
	}
	for i, name := range unread {
		e.apply(name, read[i])
	}
	e.loadedAt = e.now()
	return nil
}

// erasureReaders read a store's erasure files side by side when it opens: on a bucket each is a
// round trip, and a site that has recorded a few thousand would otherwise wait seconds for them.
const erasureReaders = 8

// readAll reads and parses the erasure files named, in their order.
func (e *erasures) readAll(ctx context.Context, names []string) ([]Erasure, error) {
	read := make([]Erasure, len(names))
	errs := make([]error, len(names))
	next := make(chan int)
	var readers sync.WaitGroup
	for range min(e.readers, len(names)) {
		readers.Go(func() {
			for i := range next {
				errs[i] = e.readOne(ctx, names[i], &read[i])
			}
		})
	}
	for i := range names {
		next <- i
	}
	close(next)
	readers.Wait()
	return read, errors.Join(errs...)
}

func (e *erasures) readOne(ctx context.Context, name string, erasure *Erasure) error {
	content, err := e.files.read(ctx, erasuresDir+"/"+name)
	if err != nil {
		return fmt.Errorf("crop store: reading erasure %s/%s: %w", erasuresDir, name, err)
	}
	if err := json.Unmarshal(content, erasure); err != nil {
		return fmt.Errorf("crop store: erasure %s/%s is not an erasure record (mend or remove it): %w", erasuresDir, name, err)
	}
	return nil
}

// apply adds one erasure file's content; e.mu is held.
func (e *erasures) apply(name string, erasure Erasure) {
	e.seen[name] = true
	e.records = append(e.records, erasure)
	for _, id := range erasure.CropIDs {
		e.crops[id] = true
	}
	for _, track := range erasure.Tracks {
		e.tracks[track] = true
	}
	if at, err := time.Parse(erasureNameTime, strings.SplitN(name, "-", 2)[0]); err == nil && at.After(e.newest) {
		e.newest = at
	}
}

// checkErased refuses a record that must not be stored again.
func (e *erasures) checkErased(ctx context.Context, record CropRecord) error {
	erased, err := e.erased(ctx, record)
	if err != nil {
		return err
	}
	if erased {
		return fmt.Errorf("%w: crop %s (camera %s, track %d)", ErrErased, record.ID, record.Camera, record.Track)
	}
	return nil
}

// sortedAfter keeps the names that sort after startAfter, sorted.
func sortedAfter(names []string, startAfter string) []string {
	kept := names[:0]
	for _, name := range names {
		if name > startAfter {
			kept = append(kept, name)
		}
	}
	sort.Strings(kept)
	return kept
}
