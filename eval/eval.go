package eval

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/reid-project/reid/internal/npy"
)

// Extractor turns image files into feature vectors, one per path, in order. The torch-backed
// embedder satisfies it in cmd/reid; tests use fakes.
type Extractor interface {
	Extract(ctx context.Context, paths []string) ([][]float32, error)
}

// Options choose how distances are formed and which protocol scores them.
type Options struct {
	// Protocol is CrossCamera (Market-1501, the zero value) or SameCamera.
	Protocol Protocol
	// Rerank applies k-reciprocal re-ranking with RerankOptions.
	Rerank        bool
	RerankOptions RerankOptions
}

// EvaluateFeatures ranks the gallery for each query by the distance of L2-normalised features
// (re-ranked when asked) and computes the metrics. It also returns the distance matrix used.
func EvaluateFeatures(ctx context.Context, queryFeatures, galleryFeatures [][]float32, query, gallery []Label, options Options) (Metrics, npy.Matrix, error) {
	if len(queryFeatures) != len(query) || len(galleryFeatures) != len(gallery) {
		return Metrics{}, npy.Matrix{}, fmt.Errorf("eval: %d query features for %d queries, %d gallery features for %d items",
			len(queryFeatures), len(query), len(galleryFeatures), len(gallery))
	}
	var distances npy.Matrix
	var err error
	if options.Rerank {
		distances, err = Rerank(ctx, queryFeatures, galleryFeatures, options.RerankOptions)
	} else {
		distances, err = Distances(ctx, queryFeatures, galleryFeatures)
	}
	if err != nil {
		return Metrics{}, npy.Matrix{}, err
	}
	metrics, err := EvaluateProtocol(ctx, distances, query, gallery, options.Protocol)
	if err != nil {
		return Metrics{}, npy.Matrix{}, err
	}
	return metrics, distances, nil
}

// EvaluateDataset extracts features of the data set's query and gallery images and evaluates them.
func EvaluateDataset(ctx context.Context, dataset Dataset, extractor Extractor, options Options) (Metrics, npy.Matrix, error) {
	queryFeatures, err := extract(ctx, extractor, dataset.Query)
	if err != nil {
		return Metrics{}, npy.Matrix{}, fmt.Errorf("eval: query features: %w", err)
	}
	galleryFeatures, err := extract(ctx, extractor, dataset.Gallery)
	if err != nil {
		return Metrics{}, npy.Matrix{}, fmt.Errorf("eval: gallery features: %w", err)
	}
	return EvaluateFeatures(ctx, queryFeatures, galleryFeatures, Labels(dataset.Query), Labels(dataset.Gallery), options)
}

func extract(ctx context.Context, extractor Extractor, items []Item) ([][]float32, error) {
	features, err := extractor.Extract(ctx, Paths(items))
	if err != nil {
		return nil, err
	}
	if len(features) != len(items) {
		return nil, fmt.Errorf("extractor returned %d features for %d images", len(features), len(items))
	}
	return features, nil
}

// FeatureFile is a feature matrix saved by `reid features`: F.npy, with the image names in F.txt
// (one per line, row order) when that file exists.
type FeatureFile struct {
	Features [][]float32
	Names    []string // nil when there is no names file
}

// ReadFeatureFile reads path (.npy) and the names file beside it (same name, .txt), if any.
func ReadFeatureFile(path string) (FeatureFile, error) {
	matrix, err := npy.ReadFile(path)
	if err != nil {
		return FeatureFile{}, fmt.Errorf("eval: %w", err)
	}
	file := FeatureFile{Features: matrix.RowSlices()}
	namesPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".txt"
	names, err := os.Open(namesPath)
	if errors.Is(err, os.ErrNotExist) {
		return file, nil
	}
	if err != nil {
		return FeatureFile{}, fmt.Errorf("eval: %w", err)
	}
	defer names.Close()
	scanner := bufio.NewScanner(names)
	for scanner.Scan() {
		if line := strings.TrimSpace(scanner.Text()); line != "" {
			file.Names = append(file.Names, line)
		}
	}
	if err := scanner.Err(); err != nil {
		return FeatureFile{}, fmt.Errorf("eval: %s: %w", namesPath, err)
	}
	if len(file.Names) != len(file.Features) {
		return FeatureFile{}, fmt.Errorf("eval: %s lists %d names for %d feature rows in %s", namesPath, len(file.Names), len(file.Features), path)
	}
	return file, nil
}

// Items labels the rows of a feature file. With names, labels come from the names and each path
// is the name itself if that file exists, else the data set item of the same base name (for
// pictures), else the bare name. Without names, the rows must follow items (the data set split,
// sorted by name) one to one. Junk rows (identity -1) are dropped from the result.
func (f FeatureFile) Items(split []Item) ([][]float32, []Item, error) {
	if f.Names == nil {
		if split == nil {
			return nil, nil, fmt.Errorf("eval: a feature file without a names file needs --dataset to label its rows")
		}
		if len(split) != len(f.Features) {
			return nil, nil, fmt.Errorf("eval: %d feature rows for %d data set images (no names file to match them)", len(f.Features), len(split))
		}
		return f.Features, split, nil
	}
	byName := map[string]string{}
	for _, item := range split {
		byName[filepath.Base(item.Path)] = item.Path
	}
	var features [][]float32
	var items []Item
	for i, name := range f.Names {
		label, err := ParseName(name)
		if err != nil {
			return nil, nil, fmt.Errorf("eval: feature row %d: %w", i, err)
		}
		if label.PID < 0 {
			continue
		}
		path := name
		if _, err := os.Stat(name); err != nil {
			if known, ok := byName[filepath.Base(name)]; ok {
				path = known
			}
		}
		features = append(features, f.Features[i])
		items = append(items, Item{Path: path, Label: label})
	}
	return features, items, nil
}
