package retention

// Erasure is retention's other half: a person asks for their images to be deleted (a data
// subject's right to erasure), and an operator names the crops or the tracks that show them.
// Everything that holds them goes: the crops in the store and their vectors in every model
// version's gallery. What other components keep of those crops (the lookup server's watches and
// alerts) is theirs to drop.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// EraseStore is the part of the crop store (cropstore.Local or S3) that erasure needs.
type EraseStore interface {
	Metadata(ctx context.Context, id string) (cropstore.CropRecord, error)
	Walk(ctx context.Context, filter cropstore.Filter, fn func(cropstore.CropRecord) error) error
	Delete(ctx context.Context, id string) error
}

// EraseIndex is the part of the vector index (index.Index) that erasure needs.
type EraseIndex interface {
	Versions(ctx context.Context) ([]index.Version, error)
	Get(ctx context.Context, version string, ids []string) ([]index.Item, error)
	TrackItems(ctx context.Context, version string, tracks []index.TrackRef, limit int) ([]index.Item, error)
	Delete(ctx context.Context, version string, ids []string) (int, error)
}

// ErasureRequest names what to erase: crops by id, and whole tracks (every crop of the track).
type ErasureRequest struct {
	CropIDs []string
	Tracks  []index.TrackRef
	// Seen is when tracks were seen as far as an earlier pass found (Found.Seen): a second pass
	// looks for a track's crops in the store over that time too, though the first erased every
	// vector through which it found them.
	Seen map[index.TrackRef]Span
	// Now is the time of the request (default time.Now()): a track no gallery has is looked for
	// among the store's crops of the minutes before it.
	Now time.Time
	// GalleriesOnly looks for a track in the store only around the crops a gallery has of it,
	// never over unindexedWindows: cheap enough to check every erasure of a site's record at once.
	GalleriesOnly bool
}

// Span is the time from a track's first crop to its last.
type Span struct{ First, Last time.Time }

func (s Span) merge(other Span) Span {
	if s.First.IsZero() || (!other.First.IsZero() && other.First.Before(s.First)) {
		s.First = other.First
	}
	if other.Last.After(s.Last) {
		s.Last = other.Last
	}
	return s
}

// Found is what a request resolves to.
type Found struct {
	// CropIDs are the crops to erase, sorted: those named that exist in the store or in any
	// gallery, and every crop of the tracks named.
	CropIDs []string
	// MissingCrops and MissingTracks were named but found nowhere (already erased, pruned, or
	// mistyped; a track no gallery has is looked for in the store over unindexedWindows only).
	MissingCrops  []string
	MissingTracks []index.TrackRef
	// Seen is each track's span as found (with the request's Seen merged in).
	Seen map[index.TrackRef]Span
}

// Erased counts what Erase deleted.
type Erased struct {
	// Vectors is summed over galleries; Crops counts crops deleted from the store.
	Vectors, Crops int
}

// maxTrackCrops bounds one track's crops: the most rows one Milvus query returns, far more than
// the per-track rate limits let a track collect.
const maxTrackCrops = 16384

// trackMargin widens the time span of a track's indexed crops when the store is searched for the
// rest of them: crops stored but not yet embedded (the embedder lags the archiver), or never
// embedded (in the dead-letter topic), lie at the ends of a track that is still being seen or
// between crops the index has.
const trackMargin = 2 * time.Minute

// unindexedWindow is how far the store is searched for a track that no gallery has: the crops
// of the last ten minutes before the request (an embedder that lags the archiver, or dead-letters
// what it cannot decode, has indexed none of a track just seen), and of the first ten minutes of
// its tracker's session, which its id names (a video file's times are not the clock's). Wider,
// a busy camera's store would take too long to read for an API call: 10 minutes are some 11,000
// crops, 0.3 s on a local disk (BenchmarkWalk).
const unindexedWindow = 10 * time.Minute

// unindexedWindows are the spans of the store where the crops of a track no gallery has are
// looked for (see unindexedWindow).
func unindexedWindows(track index.TrackRef, now time.Time) []cropstore.Filter {
	recent := cropstore.Filter{Camera: track.Camera, From: now.Add(-unindexedWindow), To: now.Add(trackMargin)}
	sessionStart := time.Unix(track.Track/cropstore.TrackSession, 0)
	session := cropstore.Filter{Camera: track.Camera, From: sessionStart.Add(-trackMargin), To: sessionStart.Add(unindexedWindow)}
	if session.To.Before(recent.From) || session.From.After(recent.To) {
		return []cropstore.Filter{session, recent}
	}
	if session.From.Before(recent.From) {
		recent.From = session.From
	}
	if session.To.After(recent.To) {
		recent.To = session.To
	}
	return []cropstore.Filter{recent}
}

// Find resolves request against the store and every gallery without deleting anything: the
// dry run, and the first half of an erasure.
func Find(ctx context.Context, store EraseStore, vectors EraseIndex, request ErasureRequest) (Found, error) {
	versions, err := vectors.Versions(ctx)
	if err != nil {
		return Found{}, fmt.Errorf("erasure: %w", err)
	}
	erase := map[string]bool{}

	// Named crops exist if the store or any gallery has them: a crop whose image was lost still
	// has vectors to erase, and one not yet embedded still has an image.
	indexed := map[string]bool{}
	for _, version := range versions {
		items, err := vectors.Get(ctx, version.Name, request.CropIDs)
		if err != nil {
			return Found{}, fmt.Errorf("erasure: gallery %s: %w", version.Name, err)
		}
		for _, item := range items {
			indexed[item.ID] = true
		}
	}
	found := Found{Seen: map[index.TrackRef]Span{}}
	for _, id := range request.CropIDs {
		if indexed[id] {
			erase[id] = true
			continue
		}
		_, err := store.Metadata(ctx, id)
		switch {
		case err == nil:
			erase[id] = true
		case errors.Is(err, cropstore.ErrNotFound):
			found.MissingCrops = append(found.MissingCrops, id)
		default:
			return Found{}, fmt.Errorf("erasure: crop %s: %w", id, err)
		}
	}

	// A track's crops are found in the galleries, and then in the store over the time they span.
	for _, track := range request.Tracks {
		seen := request.Seen[track]
		for _, version := range versions {
			items, err := vectors.TrackItems(ctx, version.Name, []index.TrackRef{track}, maxTrackCrops)
			if err != nil {
				return Found{}, fmt.Errorf("erasure: gallery %s: %w", version.Name, err)
			}
			if len(items) == maxTrackCrops {
				return Found{}, fmt.Errorf("erasure: track %s/%d has %d crops or more; erase it by crop ids in parts", track.Camera, track.Track, maxTrackCrops)
			}
			for _, item := range items {
				erase[item.ID] = true
				seen = seen.merge(Span{First: item.Metadata.Time, Last: item.Metadata.Time})
			}
		}
		if seen.First.IsZero() && !request.GalleriesOnly {
			now := request.Now
			if now.IsZero() {
				now = time.Now()
			}
			for _, filter := range unindexedWindows(track, now) {
				err := store.Walk(ctx, filter, func(record cropstore.CropRecord) error {
					if record.Track == track.Track {
						seen = seen.merge(Span{First: record.Time, Last: record.Time})
					}
					return nil
				})
				if err != nil {
					return Found{}, fmt.Errorf("erasure: crops of track %s/%d: %w", track.Camera, track.Track, err)
				}
			}
		}
		if seen.First.IsZero() {
			found.MissingTracks = append(found.MissingTracks, track)
			continue
		}
		found.Seen[track] = seen
		filter := cropstore.Filter{Camera: track.Camera, From: seen.First.Add(-trackMargin), To: seen.Last.Add(trackMargin)}
		err := store.Walk(ctx, filter, func(record cropstore.CropRecord) error {
			if record.Track == track.Track {
				erase[record.ID] = true
			}
			return nil
		})
		if err != nil {
			return Found{}, fmt.Errorf("erasure: crops of track %s/%d: %w", track.Camera, track.Track, err)
		}
	}
	found.CropIDs = slices.Sorted(func(yield func(string) bool) {
		for id := range erase {
			if !yield(id) {
				return
			}
		}
	})
	return found, nil
}

// Erase deletes ids from the store and then from every gallery. The order is Prune's reversed on
// purpose: a track's crops are found through the galleries, so an erasure that fails part way must
// leave the vectors for last, or repeating it could no longer find the crops still stored (a
// search meanwhile may show a crop whose image is gone). Erasing again after a failure finishes the
// job: deleting what is already gone is not an error.
func Erase(ctx context.Context, store EraseStore, vectors EraseIndex, ids []string) (Erased, error) {
	var erased Erased
	if len(ids) == 0 {
		return erased, nil
	}
	for _, id := range ids {
		// Deleting a missing crop is not an error, so count only the crops that were there.
		if _, err := store.Metadata(ctx, id); errors.Is(err, cropstore.ErrNotFound) {
			continue
		}
		if err := store.Delete(ctx, id); err != nil {
			return erased, fmt.Errorf("erasure: crop store: %w", err)
		}
		erased.Crops++
	}
	versions, err := vectors.Versions(ctx)
	if err != nil {
		return erased, fmt.Errorf("erasure: %w", err)
	}
	for _, version := range versions {
		deleted, err := vectors.Delete(ctx, version.Name, ids)
		erased.Vectors += deleted
		if err != nil {
			return erased, fmt.Errorf("erasure: gallery %s: %w", version.Name, err)
		}
	}
	return erased, nil
}
