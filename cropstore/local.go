package cropstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/reid-project/reid/internal/atomicfile"
)

// Local keeps crops as files under one root directory. It is safe for concurrent use: every write
// goes to a unique temporary file and is renamed into place.
type Local struct {
	root     string
	erasures *erasures
}

// OpenLocal opens (creating if needed) a store rooted at dir.
func OpenLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("crop store: %w", err)
	}
	store := &Local{root: dir}
	store.erasures = newErasures(store)
	return store, nil
}

// Root is the store's directory.
func (s *Local) Root() string { return s.root }

// Location names the store's directory, for logs.
func (s *Local) Location() string { return s.root }

// path is where the file of a store-relative name lives.
func (s *Local) path(name string) string { return filepath.Join(s.root, filepath.FromSlash(name)) }

// objectNames are a crop's names relative to the store: <camera>/<YYYYMMDD>/<id>.jpg, and the
// .json beside it where a store written before metadata moved into the image keeps it.
func objectNames(id string) (image, legacyMetadata string, err error) {
	parsed, err := ParseID(id)
	if err != nil {
		return "", "", err
	}
	base := parsed.Camera + "/" + parsed.Time.Format("20060102") + "/" + id
	return base + ".jpg", base + ".json", nil
}

// checkPut refuses a record no store may keep, and returns its file's name and content.
func checkPut(record CropRecord) (name string, content []byte, err error) {
	parsed, err := ParseID(record.ID)
	if err != nil {
		return "", nil, err
	}
	if parsed.Camera != record.Camera {
		return "", nil, fmt.Errorf("%w %q: camera part differs from record camera %q", ErrInvalidID, record.ID, record.Camera)
	}
	if len(record.JPEG) == 0 {
		return "", nil, fmt.Errorf("%w: record %s has no image", ErrInvalidImage, record.ID)
	}
	if name, _, err = objectNames(record.ID); err != nil {
		return "", nil, err
	}
	content, err = encodeCrop(record)
	return name, content, err
}

// Put stores record atomically (one file, written to a temporary name, synced and renamed), so a
// crop is visible only once it is whole. Putting the same id again replaces it, so retries are
// harmless.
func (s *Local) Put(ctx context.Context, record CropRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, content, err := checkPut(record)
	if err != nil {
		return err
	}
	if err := s.erasures.checkErased(ctx, record); err != nil {
		return err
	}
	file := s.path(name)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("crop store: %w", err)
	}
	if err := atomicfile.Write(file, content); err != nil {
		return fmt.Errorf("crop store: write %s: %w", filepath.Base(file), err)
	}
	return nil
}

// RecordErasure records erasure, so that Put refuses its crops from now on, in this process and,
// within ErasureRefresh, in every other process that opens this store.
func (s *Local) RecordErasure(ctx context.Context, erasure Erasure) error {
	return s.erasures.record(ctx, erasure)
}

// Erased says whether record's crop or track was erased (see RecordErasure): a stage that keeps
// crops elsewhere (the embedder's index) drops such a record.
func (s *Local) Erased(ctx context.Context, record CropRecord) (bool, error) {
	return s.erasures.erased(ctx, record)
}

// Erasures returns every erasure recorded (see RecordErasure), oldest first: what a lookup server
// enforces again at start.
func (s *Local) Erasures(ctx context.Context) ([]Erasure, error) { return s.erasures.all(ctx) }

func (s *Local) listErasures(ctx context.Context, startAfter string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.path(erasuresDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, entry := range entries {
		// Temporary files of a write in progress start with a dot.
		if entry.Type().IsRegular() && !strings.HasPrefix(entry.Name(), ".") {
			names = append(names, entry.Name())
		}
	}
	return sortedAfter(names, startAfter), nil
}

// writeErasure writes an erasure file and syncs its folder: an erasure, unlike a crop, must
// survive a crash of the machine that was told of it.
func (s *Local) writeErasure(ctx context.Context, name string, content []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := s.path(erasuresDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, name), content); err != nil {
		return err
	}
	folder, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer folder.Close()
	return folder.Sync()
}

// head reads the first headBytes of a file; whole says the file ended within them.
func (s *Local) head(ctx context.Context, name string) (data []byte, whole bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	file, err := os.Open(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("%w: %s", ErrNotFound, path.Base(name))
	}
	if err != nil {
		return nil, false, fmt.Errorf("crop store: %w", err)
	}
	defer file.Close()
	data = make([]byte, headBytes)
	n, err := io.ReadFull(file, data)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return data[:n], true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("crop store: %w", err)
	}
	return data, false, nil
}

// read reads a whole file.
func (s *Local) read(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path.Base(name))
	}
	if err != nil {
		return nil, fmt.Errorf("crop store: %w", err)
	}
	return data, nil
}

// Metadata reads a record without its image.
func (s *Local) Metadata(ctx context.Context, id string) (CropRecord, error) {
	return readMetadata(ctx, s, id)
}

// Get reads a record with its image.
func (s *Local) Get(ctx context.Context, id string) (CropRecord, error) { return readCrop(ctx, s, id) }

// Image reads only the JPEG bytes of a crop.
func (s *Local) Image(ctx context.Context, id string) ([]byte, error) {
	record, err := readCrop(ctx, s, id)
	return record.JPEG, err
}

// Delete removes a crop; deleting a missing crop is not an error.
func (s *Local) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	imageName, legacyName, err := objectNames(id)
	if err != nil {
		return err
	}
	// A crop of an older store loses its metadata first, so a half-deleted one is invisible
	// rather than imageless.
	for _, name := range []string{legacyName, imageName} {
		if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("crop store: %w", err)
		}
	}
	return nil
}

// Cameras lists the cameras that have crops, sorted.
func (s *Local) Cameras(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("crop store: %w", err)
	}
	var cameras []string
	for _, entry := range entries {
		if entry.IsDir() && validCamera(entry.Name()) {
			cameras = append(cameras, entry.Name())
		}
	}
	return cameras, ctx.Err()
}

// Filter selects records in Walk. Zero fields select everything. From and To compare a crop's
// time, which its id also holds (to the microsecond) and Walk looks at first: a record whose time
// disagrees with its id's by more than a second may be left out, as its day directory (named from
// the id) may be.
type Filter struct {
	Camera   string
	From, To time.Time
	// Newest walks each camera's crops newest first.
	Newest bool
}

// Walk calls fn with the metadata of every complete record matching filter, in camera, then time
// (newest first with filter.Newest), then id order. fn returning an error stops the walk with
// that error.
func (s *Local) Walk(ctx context.Context, filter Filter, fn func(CropRecord) error) error {
	cameras, err := walkCameras(ctx, filter, s.Cameras)
	if err != nil {
		return err
	}
	for _, camera := range cameras {
		entries, err := os.ReadDir(filepath.Join(s.root, camera))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("crop store: %w", err)
		}
		var days []string
		for _, entry := range entries {
			if entry.IsDir() {
				days = append(days, entry.Name())
			}
		}
		for _, day := range walkDays(days, filter) {
			ids, err := s.dayIDs(filepath.Join(s.root, camera, day))
			if err != nil {
				return err
			}
			if err := visitDay(ctx, camera, ids, filter, s.readRecords, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// readRecords reads the records of ids in order, leaving out those deleted since the listing
// (and an older store's crops without their metadata yet).
func (s *Local) readRecords(ctx context.Context, ids []string) ([]CropRecord, error) {
	records := make([]CropRecord, 0, len(ids))
	for _, id := range ids {
		record, err := readMetadata(ctx, s, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		records = append(records, record)
	}
	return records, ctx.Err()
}

// walkDays is the days (YYYYMMDD, sorted) a Walk visits, in its order.
func walkDays(days []string, filter Filter) []string {
	var visited []string
	for _, day := range days {
		if dayInRange(day, filter) {
			visited = append(visited, day)
		}
	}
	if filter.Newest {
		slices.Reverse(visited)
	}
	return visited
}

// walkCameras is the cameras a Walk visits: the filter's one, or every camera.
func walkCameras(ctx context.Context, filter Filter, all func(context.Context) ([]string, error)) ([]string, error) {
	if filter.Camera == "" {
		return all(ctx)
	}
	if !validCamera(filter.Camera) {
		return nil, fmt.Errorf("crop store: invalid camera %q", filter.Camera)
	}
	return []string{filter.Camera}, nil
}

// walkChunk is how many records a walk reads ahead of fn: a walk that stops early (a page of a
// listing) reads little more than it returns, and S3 reads a chunk's objects at once.
const walkChunk = 64

// visitDay calls fn with the records of one of camera's days (ids, in any order) that are in the
// filter's time range, in time, then id order (reversed with filter.Newest). Ids in name order are
// in that order (see idPrefix),
// so the ids in range are found by name, with a second's margin, and only their records are read,
// a chunk at a time: a day of a busy camera holds a million crops, and a listing page or a
// track's erasure wants a few of them.
func visitDay(ctx context.Context, camera string, ids []string, filter Filter, read func(context.Context, []string) ([]CropRecord, error), fn func(CropRecord) error) error {
	const margin = time.Second
	if !slices.IsSorted(ids) {
		ids = slices.Sorted(slices.Values(ids))
	}
	if !filter.From.IsZero() {
		ids = ids[sort.SearchStrings(ids, idPrefix(camera, filter.From.Add(-margin))):]
	}
	if !filter.To.IsZero() {
		ids = ids[:sort.SearchStrings(ids, idPrefix(camera, filter.To.Add(margin+time.Microsecond)))]
	}
	if filter.Newest {
		ids = slices.Clone(ids)
		slices.Reverse(ids)
	}
	for start := 0; start < len(ids); start += walkChunk {
		records, err := read(ctx, ids[start:min(start+walkChunk, len(ids))])
		if err != nil {
			return err
		}
		for _, record := range records {
			if (!filter.From.IsZero() && record.Time.Before(filter.From)) || (!filter.To.IsZero() && record.Time.After(filter.To)) {
				continue
			}
			if err := fn(record); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteBefore removes every crop whose time is before t and returns how many there were. Whole
// day directories older than t's day go in one step each (a site deletes a day of crops at a
// time); crops of t's own day are checked one by one, by the time in their ids.
func (s *Local) DeleteBefore(ctx context.Context, t time.Time) (int, error) {
	cameras, err := s.Cameras(ctx)
	if err != nil {
		return 0, err
	}
	return s.deleteBefore(ctx, cameras, t)
}

// DeleteCameraBefore is DeleteBefore for one camera's crops (a camera kept for less time than the
// others: retention.per_camera).
func (s *Local) DeleteCameraBefore(ctx context.Context, camera string, t time.Time) (int, error) {
	if !validCamera(camera) {
		return 0, fmt.Errorf("%w: camera %q", ErrInvalidID, camera)
	}
	if _, err := os.Stat(filepath.Join(s.root, camera)); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	return s.deleteBefore(ctx, []string{camera}, t)
}

func (s *Local) deleteBefore(ctx context.Context, cameras []string, t time.Time) (int, error) {
	t = t.UTC()
	cutoffDay := t.Format("20060102")
	deleted := 0
	for _, camera := range cameras {
		days, err := os.ReadDir(filepath.Join(s.root, camera))
		if err != nil {
			return deleted, fmt.Errorf("crop store: %w", err)
		}
		for _, day := range days {
			if err := ctx.Err(); err != nil {
				return deleted, err
			}
			if _, err := time.Parse("20060102", day.Name()); err != nil || !day.IsDir() || day.Name() > cutoffDay {
				continue
			}
			dir := filepath.Join(s.root, camera, day.Name())
			ids, err := s.dayIDs(dir)
			if err != nil {
				return deleted, err
			}
			if day.Name() < cutoffDay {
				if err := os.RemoveAll(dir); err != nil {
					return deleted, fmt.Errorf("crop store: %w", err)
				}
				deleted += len(ids)
				continue
			}
			for _, id := range ids {
				if parsed, err := ParseID(id); err != nil || !parsed.Time.Before(t) {
					continue
				}
				if err := s.Delete(ctx, id); err != nil {
					return deleted, err
				}
				deleted++
			}
		}
	}
	return deleted, nil
}

// dayIDs lists the ids of the crops in one day's directory: every <id>.jpg (temporary files start
// with a dot and end otherwise).
func (s *Local) dayIDs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("crop store: %w", err)
	}
	var ids []string
	for _, entry := range entries {
		if id, ok := strings.CutSuffix(entry.Name(), ".jpg"); ok && !strings.HasPrefix(id, ".") && entry.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func dayInRange(day string, filter Filter) bool {
	t, err := time.Parse("20060102", day)
	if err != nil {
		return false
	}
	if !filter.From.IsZero() && t.Add(24*time.Hour).Before(filter.From.UTC()) {
		return false
	}
	if !filter.To.IsZero() && t.After(filter.To.UTC()) {
		return false
	}
	return true
}
