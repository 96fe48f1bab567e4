// Package eval measures re-identification accuracy the standard way: Market-1501 data sets,
// mAP, CMC rank-k and mINP under the Market protocol, optional k-reciprocal re-ranking, and
// ranked-result pictures.
//
// The protocol, as in the Market-1501 authors' evaluation code, torchreid's eval_market1501 and
// Cluster Contrast's evaluator:
//   - identity -1 ("junk": bad detections) is dropped when the data set is read, so it neither helps
//     nor hurts; Label.PID < 0 passed to Evaluate directly is ignored the same way;
//   - identity 0 ("distractors": background and people outside the annotated set) stays in the
//     gallery as a negative for every query; a query must have a real identity (PID > 0), as every
//     query of Market-1501 does, otherwise it is skipped;
//   - a gallery item with the query's identity AND camera is ignored (it would be a trivial
//     same-camera match);
//   - a query with no remaining true match is left out of every average.
package eval

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The Market-1501 directory names.
const (
	TrainDir   = "bounding_box_train"
	GalleryDir = "bounding_box_test"
	QueryDir   = "query"
)

// Label is what the protocol needs to know about one image.
type Label struct {
	PID    int // identity; -1 junk, 0 distractor
	Camera int // camera number, from 1
}

// Item is one image of a data set.
type Item struct {
	Path string
	Label
}

// Dataset is a Market-1501 layout data set. Items are sorted by file name.
type Dataset struct {
	Root                  string
	Train, Query, Gallery []Item
	// JunkDropped counts identity -1 images left out of each split (train, query, gallery).
	JunkDropped [3]int
	// QueryDistractorsDropped counts identity 0 images found in the query directory.
	QueryDistractorsDropped int
}

// Labels returns the labels of items in order.
func Labels(items []Item) []Label {
	labels := make([]Label, len(items))
	for i, item := range items {
		labels[i] = item.Label
	}
	return labels
}

// Paths returns the paths of items in order.
func Paths(items []Item) []string {
	paths := make([]string, len(items))
	for i, item := range items {
		paths[i] = item.Path
	}
	return paths
}

// The reference loaders use ([-\d]+)_c(\d); \d+ also admits data sets with ten or more cameras.
var namePattern = regexp.MustCompile(`^(-1|\d+)_c(\d+)`)

// ErrName is wrapped by errors about image names outside the Market-1501 convention.
var ErrName = errors.New("not a Market-1501 image name (want PID_cCAM..., e.g. 0002_c1s1_000451_03.jpg)")

// ParseName reads identity and camera from a Market-1501 file name such as
// 0002_c1s1_000451_03.jpg (identity 2, camera 1) or -1_c3s2_001234_01.jpg (junk, camera 3).
func ParseName(name string) (Label, error) {
	match := namePattern.FindStringSubmatch(filepath.Base(name))
	if match == nil {
		return Label{}, fmt.Errorf("%q: %w", name, ErrName)
	}
	pid, err := strconv.Atoi(match[1])
	if err != nil {
		return Label{}, fmt.Errorf("%q: %w", name, ErrName)
	}
	camera, err := strconv.Atoi(match[2])
	if err != nil || camera < 1 {
		return Label{}, fmt.Errorf("%q: camera must be 1 or more: %w", name, ErrName)
	}
	return Label{PID: pid, Camera: camera}, nil
}

func isImage(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png":
		return true
	}
	return false
}

// readSplit lists the images of one directory, dropping junk.
func readSplit(dir string) (items []Item, junk int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	for _, entry := range entries {
		// Other files (Thumbs.db in the original archive, notes) are not part of the set.
		if entry.IsDir() || !isImage(entry.Name()) {
			continue
		}
		label, err := ParseName(entry.Name())
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", dir, err)
		}
		if label.PID < 0 {
			junk++
			continue
		}
		items = append(items, Item{Path: filepath.Join(dir, entry.Name()), Label: label})
	}
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Path, b.Path) })
	return items, junk, nil
}

// Load reads a data set in the Market-1501 layout under root. query and bounding_box_test are
// required; bounding_box_train is read when present.
func Load(root string) (Dataset, error) {
	dataset := Dataset{Root: root}
	var err error
	if dataset.Query, dataset.JunkDropped[1], err = readSplit(filepath.Join(root, QueryDir)); err != nil {
		return Dataset{}, fmt.Errorf("eval: data set %s: %w", root, err)
	}
	if dataset.Gallery, dataset.JunkDropped[2], err = readSplit(filepath.Join(root, GalleryDir)); err != nil {
		return Dataset{}, fmt.Errorf("eval: data set %s: %w", root, err)
	}
	if _, statErr := os.Stat(filepath.Join(root, TrainDir)); statErr == nil {
		if dataset.Train, dataset.JunkDropped[0], err = readSplit(filepath.Join(root, TrainDir)); err != nil {
			return Dataset{}, fmt.Errorf("eval: data set %s: %w", root, err)
		}
	}
	queries := dataset.Query[:0]
	for _, item := range dataset.Query {
		if item.PID == 0 {
			dataset.QueryDistractorsDropped++
			continue
		}
		queries = append(queries, item)
	}
	dataset.Query = queries
	if len(dataset.Query) == 0 || len(dataset.Gallery) == 0 {
		return Dataset{}, fmt.Errorf("eval: data set %s: %d query and %d gallery images; both must be non-empty",
			root, len(dataset.Query), len(dataset.Gallery))
	}
	return dataset, nil
}
