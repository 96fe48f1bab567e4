// Package index is the nearest-neighbour search over every stored crop embedding, behind one
// interface with two backends: index/embedded (the single-machine default, persisted under the
// data dir) and index/milvus (Milvus at scale). index/indextest is the behavioural suite both pass.
//
// Embeddings of different model versions are never compared: each version has its own gallery,
// and exactly one version is active. Lookups read the active gallery; activating a new version
// switches every later lookup in one step.
package index

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Metadata is what a search returns with each match, and what filters select on.
type Metadata struct {
	Camera string    `json:"camera"`
	Time   time.Time `json:"time"`
	Track  int64     `json:"track"`
	Frame  int64     `json:"frame"`
	// Box is x, y, width, height in frame pixels.
	Box [4]int32 `json:"box"`
	// Model is the model version that made the vector.
	Model string `json:"model"`
}

// Item is one crop's embedding with its metadata. Vectors are L2-normalised, so inner product is
// cosine similarity.
type Item struct {
	ID       string    `json:"id"`
	Vector   []float32 `json:"vector"`
	Metadata Metadata  `json:"metadata"`
}

// Filter narrows a search. Zero values select everything.
type Filter struct {
	// Cameras, when not empty, keeps only matches from these cameras.
	Cameras []string
	// ExcludeCameras drops matches from these cameras.
	ExcludeCameras []string
	// From and To bound the match time (inclusive).
	From, To time.Time
	// MinScore, when not zero, drops matches whose cosine similarity is below it. Zero means no
	// minimum (cosine similarity may be negative); to drop negative scores use a tiny positive value.
	MinScore float32
}

// Query is a search for the K nearest neighbours of each of Vectors.
type Query struct {
	Vectors [][]float32
	K       int
	Filter  Filter
	// Exact forces exact search even where the backend is approximate.
	Exact bool
}

// Validate rejects queries no backend can answer.
func (q Query) Validate(dim int) error {
	if len(q.Vectors) == 0 {
		return errors.New("index: query has no vectors")
	}
	if q.K < 1 || q.K > 10000 {
		return fmt.Errorf("index: k must be 1-10000, not %d", q.K)
	}
	for i, vector := range q.Vectors {
		if len(vector) != dim {
			return fmt.Errorf("%w: query vector %d has %d values, gallery has %d", ErrDimension, i, len(vector), dim)
		}
	}
	if !q.Filter.From.IsZero() && !q.Filter.To.IsZero() && q.Filter.To.Before(q.Filter.From) {
		return errors.New("index: filter time range ends before it starts")
	}
	return nil
}

// TrackRef names one track: the tracker's track ids are per camera.
type TrackRef struct {
	Camera string `json:"camera"`
	Track  int64  `json:"track"`
}

// Match is one search hit.
type Match struct {
	ID       string   `json:"id"`
	Score    float32  `json:"score"`
	Metadata Metadata `json:"metadata"`
}

// Version describes one model version's gallery.
type Version struct {
	Name   string `json:"name"`
	Dim    int    `json:"dim"`
	Count  int    `json:"count"`
	Active bool   `json:"active"`
}

// Index is implemented by every backend. All methods are safe for concurrent use.
// A version argument of "" means the active version.
type Index interface {
	// CreateVersion makes an empty gallery for a model version with vectors of dim values.
	// Creating an existing version with the same dim is not an error.
	CreateVersion(ctx context.Context, version string, dim int) error
	// Activate makes version the one lookups read, in one atomic step.
	Activate(ctx context.Context, version string) error
	// Active names the active version; ErrNoActiveVersion if none is.
	Active(ctx context.Context) (Version, error)
	// Versions lists every gallery.
	Versions(ctx context.Context) ([]Version, error)
	// DropVersion deletes a gallery; dropping the active one is an error.
	DropVersion(ctx context.Context, version string) error

	// Upsert inserts or replaces items by id. When it returns nil the items are durable.
	Upsert(ctx context.Context, version string, items []Item) error
	// Search returns, for each query vector, up to K matches by descending score.
	Search(ctx context.Context, version string, query Query) ([][]Match, error)
	// Get returns the items with these ids that exist, in the order asked.
	Get(ctx context.Context, version string, ids []string) ([]Item, error)
	// TrackItems returns the items of these tracks, in no particular order, stopping at limit
	// items. A lookup scores a candidate by its whole track (see lookup's track consensus), and
	// a track is only known to the index as the items that carry it.
	TrackItems(ctx context.Context, version string, tracks []TrackRef, limit int) ([]Item, error)
	// Delete removes items by id and returns how many existed.
	Delete(ctx context.Context, version string, ids []string) (int, error)
	// DeleteBefore removes items older than t (retention) and returns how many.
	DeleteBefore(ctx context.Context, version string, t time.Time) (int, error)
	// DeleteCameraBefore removes one camera's items older than t (a camera kept for less time
	// than the rest) and returns how many.
	DeleteCameraBefore(ctx context.Context, version, camera string, t time.Time) (int, error)
	// Count is the number of items in a gallery.
	Count(ctx context.Context, version string) (int, error)

	Close() error
}

var (
	// ErrDimension is returned when a vector's length differs from its gallery's dimension.
	ErrDimension = errors.New("index: vector dimension mismatch")
	// ErrNoVersion is returned for a version that has no gallery.
	ErrNoVersion = errors.New("index: no such model version")
	// ErrNoActiveVersion is returned when no version has been activated yet.
	ErrNoActiveVersion = errors.New("index: no active model version")
	// ErrActiveVersion is returned when dropping the active version.
	ErrActiveVersion = errors.New("index: version is active")
)

// Keep reports whether a match with this metadata and score passes filter.
func (f Filter) Keep(metadata Metadata, score float32) bool {
	if f.MinScore != 0 && score < f.MinScore {
		return false
	}
	if len(f.Cameras) > 0 && !contains(f.Cameras, metadata.Camera) {
		return false
	}
	if contains(f.ExcludeCameras, metadata.Camera) {
		return false
	}
	if !f.From.IsZero() && metadata.Time.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && metadata.Time.After(f.To) {
		return false
	}
	return true
}

func contains(values []string, value string) bool {
	for _, candidate := range values {
		if candidate == value {
			return true
		}
	}
	return false
}
