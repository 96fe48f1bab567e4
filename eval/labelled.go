package eval

// A site's own validation set is built a person at a time from stored crops that someone has
// looked at and found to be one person (reid validation add). It is an ordinary Market-1501
// layout data set, so reid eval and reid train --validate read it as they read any other; the
// files beside the images remember what the names cannot: which camera each number is, and which
// crop each image was.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/internal/atomicfile"
)

// LabelledCrop is one stored crop of a person being added.
type LabelledCrop struct {
	CropID string
	Camera string
	JPEG   []byte
	// Query puts the crop in query/ rather than bounding_box_test/.
	Query bool
}

// Person is one identity of a labelled set.
type Person struct {
	PID int `json:"pid"`
	// Crops are the stored crops it was made from, by camera.
	Crops map[string][]string `json:"crops"`
	Note  string              `json:"note,omitempty"`
}

// LabelledSet is a validation set under Root, as its manifest records it.
type LabelledSet struct {
	Root string `json:"-"`
	// Cameras numbers the camera ids: Cameras[i] is camera i+1 in the image names.
	Cameras []string `json:"cameras"`
	People  []Person `json:"people"`
	// NextPID is the number the next person gets: numbers are never reused, so a removed person's
	// number (in a note, a log, an audit record) never names someone else.
	NextPID int `json:"next_pid"`
}

// manifestFile lists the set's cameras and people; the images are named from it.
const manifestFile = "labels.json"

// AddPerson's refusals: a crop that is already in the set, and a person seen by one camera.
var (
	ErrLabelled  = errors.New("crop already labelled")
	ErrOneCamera = errors.New("a person needs crops from at least two cameras")
)

// OpenLabelledSet reads the set under root, or returns an empty one when it has no manifest yet.
func OpenLabelledSet(root string) (*LabelledSet, error) {
	set := &LabelledSet{Root: root}
	if err := set.reload(); err != nil {
		return nil, err
	}
	return set, nil
}

// reload reads the manifest again: another process (reid validation add beside a lookup server)
// may have changed it since.
func (set *LabelledSet) reload() error {
	fresh := LabelledSet{Root: set.Root}
	data, err := os.ReadFile(filepath.Join(set.Root, manifestFile))
	if errors.Is(err, os.ErrNotExist) {
		*set = fresh
		return nil
	}
	if err != nil {
		return fmt.Errorf("eval: labelled set: %w", err)
	}
	if err := json.Unmarshal(data, &fresh); err != nil {
		return fmt.Errorf("eval: labelled set %s: %w", filepath.Join(set.Root, manifestFile), err)
	}
	*set = fresh
	return nil
}

// LockLabelledSet holds the set's lock until the returned function is called, so that a copy of
// the directory (a backup) sees no add or removal half done.
func LockLabelledSet(root string) (unlock func(), err error) { return lockSet(root) }

// lockSet holds an exclusive advisory lock on the set's directory (made if need be) until the
// returned function is called, so that two processes changing the set take turns. The kernel
// drops it if the process dies.
func lockSet(root string) (unlock func(), err error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("eval: labelled set: %w", err)
	}
	file, err := os.OpenFile(filepath.Join(root, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("eval: labelled set: %w", err)
	}
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX); err != nil {
		file.Close()
		return nil, fmt.Errorf("eval: labelled set: lock: %w", err)
	}
	return func() { file.Close() }, nil // closing releases the lock
}

// AddPerson adds one person seen in crops, which must come from at least two cameras and include
// a query: a person seen by one camera has no cross-camera match to find. It writes the images
// first and the manifest last, so an interrupted add leaves images that the next add of the same
// number overwrites. It returns the person's identity number.
func (set *LabelledSet) AddPerson(crops []LabelledCrop, note string) (Person, error) {
	unlock, err := lockSet(set.Root)
	if err != nil {
		return Person{}, err
	}
	defer unlock()
	if err := set.reload(); err != nil {
		return Person{}, err
	}
	return set.addPerson(crops, note)
}

func (set *LabelledSet) addPerson(crops []LabelledCrop, note string) (Person, error) {
	labelled := map[string]int{}
	for _, person := range set.People {
		for _, ids := range person.Crops {
			for _, id := range ids {
				labelled[id] = person.PID
			}
		}
	}
	person := Person{PID: max(set.NextPID, 1), Crops: map[string][]string{}, Note: note}
	for _, existing := range set.People {
		person.PID = max(person.PID, existing.PID+1)
	}
	queries := 0
	for _, crop := range crops {
		if pid, ok := labelled[crop.CropID]; ok {
			return Person{}, fmt.Errorf("eval: %w: %s is person %d", ErrLabelled, crop.CropID, pid)
		}
		person.Crops[crop.Camera] = append(person.Crops[crop.Camera], crop.CropID)
		if crop.Query {
			queries++
		}
	}
	if len(person.Crops) < 2 || queries == 0 {
		return Person{}, fmt.Errorf("eval: %w and a query among them (have %d cameras, %d queries)", ErrOneCamera, len(person.Crops), queries)
	}
	if person.PID > 9999 {
		return Person{}, errors.New("eval: the labelled set is full (9,999 people)")
	}
	cameras := slices.Clone(set.Cameras)
	for _, crop := range crops {
		if !slices.Contains(cameras, crop.Camera) {
			cameras = append(cameras, crop.Camera)
		}
	}
	for _, dir := range []string{QueryDir, GalleryDir} {
		if err := os.MkdirAll(filepath.Join(set.Root, dir), 0o755); err != nil {
			return Person{}, fmt.Errorf("eval: labelled set: %w", err)
		}
	}
	for i, crop := range crops {
		dir := GalleryDir
		if crop.Query {
			dir = QueryDir
		}
		// PID_cCAMERA_SEQUENCE: Market-1501's convention, which ParseName reads.
		name := fmt.Sprintf("%04d_c%d_%06d.jpg", person.PID, slices.Index(cameras, crop.Camera)+1, i+1)
		if err := atomicfile.Write(filepath.Join(set.Root, dir, name), crop.JPEG); err != nil {
			return Person{}, fmt.Errorf("eval: labelled set: %w", err)
		}
	}
	updated := *set
	updated.Cameras = cameras
	updated.People = append(slices.Clone(set.People), person)
	updated.NextPID = person.PID + 1
	data, err := json.MarshalIndent(updated, "", "  ")
	if err != nil {
		return Person{}, err
	}
	if err := atomicfile.Write(filepath.Join(set.Root, manifestFile), data); err != nil {
		return Person{}, fmt.Errorf("eval: labelled set: %w", err)
	}
	*set = updated
	return person, nil
}

// Summary says in one line what the set holds.
func (set *LabelledSet) Summary() string {
	crops := 0
	for _, person := range set.People {
		for _, ids := range person.Crops {
			crops += len(ids)
		}
	}
	return fmt.Sprintf("%d people, %d crops, cameras %s", len(set.People), crops, strings.Join(set.Cameras, ", "))
}

// RemoveCrops removes every person any of whose crops is in erased, images and all: the person is
// who an erasure request is about. With dryRun it only finds them. It returns their numbers.
func (set *LabelledSet) RemoveCrops(erased map[string]bool, dryRun bool) ([]int, error) {
	if _, err := os.Stat(filepath.Join(set.Root, manifestFile)); errors.Is(err, os.ErrNotExist) {
		return []int{}, nil // no set yet: nothing to remove, and no directory to make
	}
	unlock, err := lockSet(set.Root)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := set.reload(); err != nil {
		return nil, err
	}
	return set.removeCrops(erased, dryRun)
}

func (set *LabelledSet) removeCrops(erased map[string]bool, dryRun bool) ([]int, error) {
	removed := []int{}
	kept := make([]Person, 0, len(set.People))
	for _, person := range set.People {
		hit := false
		for _, ids := range person.Crops {
			hit = hit || slices.ContainsFunc(ids, func(id string) bool { return erased[id] })
		}
		if hit {
			removed = append(removed, person.PID)
		} else {
			kept = append(kept, person)
		}
	}
	if dryRun || len(removed) == 0 {
		return removed, nil
	}
	// The images first: while the manifest still lists a person, repeating a removal that failed
	// part way finds them and deletes what is left.
	for _, pid := range removed {
		for _, dir := range []string{QueryDir, GalleryDir} {
			images, err := filepath.Glob(filepath.Join(set.Root, dir, fmt.Sprintf("%04d_c*", pid)))
			if err != nil {
				return nil, err
			}
			for _, image := range images {
				if err := os.Remove(image); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("eval: labelled set: %w", err)
				}
			}
		}
	}
	updated := *set
	updated.People = kept
	data, err := json.MarshalIndent(updated, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(set.Root, manifestFile), data); err != nil {
		return nil, fmt.Errorf("eval: labelled set: %w", err)
	}
	*set = updated
	return removed, nil
}

// CropSource is the part of the crop store (cropstore.Local or S3) that CropsOfSightings reads.
type CropSource interface {
	Metadata(ctx context.Context, id string) (cropstore.CropRecord, error)
	Walk(ctx context.Context, filter cropstore.Filter, fn func(cropstore.CropRecord) error) error
	Image(ctx context.Context, id string) ([]byte, error)
}

// trackSpan bounds how far from a named crop the rest of its track is looked for.
const trackSpan = 10 * time.Minute

// CropsOfSightings reads the crops ids name, each with up to perTrack crops of its track (itself among
// them), and marks one crop of each camera (the middle one of the camera's first sighting named)
// as a query.
func CropsOfSightings(ctx context.Context, store CropSource, ids []string, perTrack int) ([]LabelledCrop, error) {
	var crops []LabelledCrop
	seen := map[string]bool{}
	queried := map[string]bool{}
	for _, id := range ids {
		named, err := store.Metadata(ctx, id)
		if err != nil {
			return nil, err
		}
		sighting := []cropstore.CropRecord{named}
		if named.Track > 0 {
			sighting = sighting[:0]
			filter := cropstore.Filter{Camera: named.Camera, From: named.Time.Add(-trackSpan), To: named.Time.Add(trackSpan)}
			err := store.Walk(ctx, filter, func(record cropstore.CropRecord) error {
				if record.Track == named.Track {
					sighting = append(sighting, record)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			sighting = spread(sighting, perTrack)
			// The crop someone looked at is one of them.
			if !slices.ContainsFunc(sighting, func(record cropstore.CropRecord) bool { return record.ID == named.ID }) {
				sighting[len(sighting)/2] = named
				sort.SliceStable(sighting, func(i, j int) bool { return sighting[i].Time.Before(sighting[j].Time) })
			}
		}
		query := -1
		if !queried[named.Camera] {
			query = len(sighting) / 2
			queried[named.Camera] = true
		}
		for i, record := range sighting {
			if seen[record.ID] {
				continue // two crops of one track named
			}
			seen[record.ID] = true
			image, err := store.Image(ctx, record.ID)
			if err != nil {
				return nil, err
			}
			crops = append(crops, LabelledCrop{CropID: record.ID, Camera: record.Camera, JPEG: image, Query: i == query})
		}
	}
	sort.SliceStable(crops, func(i, j int) bool { return crops[i].Camera < crops[j].Camera })
	return crops, nil
}

// spread keeps at most n records, evenly spaced over them (they are in time order).
func spread(records []cropstore.CropRecord, n int) []cropstore.CropRecord {
	if len(records) <= n {
		return records
	}
	kept := make([]cropstore.CropRecord, n)
	for i := range n {
		kept[i] = records[i*len(records)/n]
	}
	return kept
}
