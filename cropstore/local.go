package cropstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	root string
}

// OpenLocal opens (creating if needed) a store rooted at dir.
func OpenLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("crop store: %w", err)
	}
	return &Local{root: dir}, nil
}

// Root is the store's directory.
func (s *Local) Root() string { return s.root }

// Location names the store's directory, for logs.
func (s *Local) Location() string { return s.root }

func (s *Local) paths(id string) (image, metadata string, err error) {
	imageKey, metadataKey, err := objectNames(id)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(imageKey)), filepath.Join(s.root, filepath.FromSlash(metadataKey)), nil
}

// objectNames are a crop's image and metadata names relative to the store:
// <camera>/<YYYYMMDD>/<id>.jpg and .json.
func objectNames(id string) (image, metadata string, err error) {
	parsed, err := ParseID(id)
	if err != nil {
		return "", "", err
	}
	base := parsed.Camera + "/" + parsed.Time.Format("20060102") + "/" + id
	return base + ".jpg", base + ".json", nil
}

// checkPut refuses a record no store may keep and returns its object names.
func checkPut(record CropRecord) (image, metadata string, err error) {
	parsed, err := ParseID(record.ID)
	if err != nil {
		return "", "", err
	}
	if parsed.Camera != record.Camera {
		return "", "", fmt.Errorf("%w %q: camera part differs from record camera %q", ErrInvalidID, record.ID, record.Camera)
	}
	if len(record.JPEG) == 0 {
		return "", "", fmt.Errorf("crop store: record %s has no image", record.ID)
	}
	return objectNames(record.ID)
}

// Put stores record atomically. Putting the same id again replaces it, so retries are harmless.
func (s *Local) Put(ctx context.Context, record CropRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, _, err := checkPut(record); err != nil {
		return err
	}
	imagePath, metadataPath, err := s.paths(record.ID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(imagePath), 0o755); err != nil {
		return fmt.Errorf("crop store: %w", err)
	}
	metadata, err := json.Marshal(record)
	if err != nil {
		return fmt.Errorf("crop store: %w", err)
	}
	if err := writeAtomic(imagePath, record.JPEG); err != nil {
		return err
	}
	return writeAtomic(metadataPath, metadata)
}

func writeAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("crop store: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// Metadata reads a record without its image.
func (s *Local) Metadata(ctx context.Context, id string) (CropRecord, error) {
	if err := ctx.Err(); err != nil {
		return CropRecord{}, err
	}
	_, metadataPath, err := s.paths(id)
	if err != nil {
		return CropRecord{}, err
	}
	return readMetadata(metadataPath)
}

func readMetadata(path string) (CropRecord, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return CropRecord{}, fmt.Errorf("%w: %s", ErrNotFound, strings.TrimSuffix(filepath.Base(path), ".json"))
	}
	if err != nil {
		return CropRecord{}, fmt.Errorf("crop store: %w", err)
	}
	var record CropRecord
	if err := json.Unmarshal(raw, &record); err != nil {
		return CropRecord{}, fmt.Errorf("crop store: metadata %s: %w", filepath.Base(path), err)
	}
	return record, nil
}

// Get reads a record with its image.
func (s *Local) Get(ctx context.Context, id string) (CropRecord, error) {
	record, err := s.Metadata(ctx, id)
	if err != nil {
		return CropRecord{}, err
	}
	image, err := s.Image(ctx, id)
	if err != nil {
		return CropRecord{}, err
	}
	record.JPEG = image
	return record, nil
}

// Image reads only the JPEG bytes of a crop.
func (s *Local) Image(ctx context.Context, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	imagePath, _, err := s.paths(id)
	if err != nil {
		return nil, err
	}
	image, err := os.ReadFile(imagePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("crop store: %w", err)
	}
	return image, nil
}

// Delete removes a crop; deleting a missing crop is not an error.
func (s *Local) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	imagePath, metadataPath, err := s.paths(id)
	if err != nil {
		return err
	}
	// Metadata first, so a half-deleted crop is invisible rather than imageless.
	for _, path := range []string{metadataPath, imagePath} {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
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

// Filter selects records in Walk. Zero fields select everything.
type Filter struct {
	Camera   string
	From, To time.Time
}

// Walk calls fn with the metadata of every complete record matching filter, in camera, then time,
// then id order. fn returning an error stops the walk with that error.
func (s *Local) Walk(ctx context.Context, filter Filter, fn func(CropRecord) error) error {
	cameras, err := walkCameras(ctx, filter, s.Cameras)
	if err != nil {
		return err
	}
	for _, camera := range cameras {
		days, err := os.ReadDir(filepath.Join(s.root, camera))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("crop store: %w", err)
		}
		for _, day := range days {
			if !day.IsDir() || !dayInRange(day.Name(), filter) {
				continue
			}
			dir := filepath.Join(s.root, camera, day.Name())
			names, err := filepath.Glob(filepath.Join(dir, "*.json"))
			if err != nil {
				return fmt.Errorf("crop store: %w", err)
			}
			records := make([]CropRecord, 0, len(names))
			for _, name := range names {
				if err := ctx.Err(); err != nil {
					return err
				}
				record, err := readMetadata(name)
				if err != nil {
					return err
				}
				records = append(records, record)
			}
			if err := visitDay(records, filter, fn); err != nil {
				return err
			}
		}
	}
	return nil
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

// visitDay calls fn with one day's records that are in the filter's time range, in time, then id
// order.
func visitDay(records []CropRecord, filter Filter, fn func(CropRecord) error) error {
	records = slices.DeleteFunc(records, func(record CropRecord) bool {
		return (!filter.From.IsZero() && record.Time.Before(filter.From)) || (!filter.To.IsZero() && record.Time.After(filter.To))
	})
	sort.Slice(records, func(i, j int) bool {
		if !records[i].Time.Equal(records[j].Time) {
			return records[i].Time.Before(records[j].Time)
		}
		return records[i].ID < records[j].ID
	})
	for _, record := range records {
		if err := fn(record); err != nil {
			return err
		}
	}
	return nil
}

// DeleteBefore removes every crop whose time is before t and returns how many there were. Whole
// day directories older than t's day go in one step each (a site deletes a day of crops at a
// time); crops of t's own day are checked one by one, by the time in their ids.
func (s *Local) DeleteBefore(ctx context.Context, t time.Time) (int, error) {
	t = t.UTC()
	cutoffDay := t.Format("20060102")
	cameras, err := s.Cameras(ctx)
	if err != nil {
		return 0, err
	}
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
			names, err := filepath.Glob(filepath.Join(dir, "*.json"))
			if err != nil {
				return deleted, fmt.Errorf("crop store: %w", err)
			}
			if day.Name() < cutoffDay {
				if err := os.RemoveAll(dir); err != nil {
					return deleted, fmt.Errorf("crop store: %w", err)
				}
				deleted += len(names)
				continue
			}
			for _, name := range names {
				id := strings.TrimSuffix(filepath.Base(name), ".json")
				parsed, err := ParseID(id)
				if err != nil || !parsed.Time.Before(t) {
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
