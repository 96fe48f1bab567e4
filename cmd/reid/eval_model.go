package main

import (
	"context"
	"fmt"
	"image"
	_ "image/jpeg" // data set crops
	_ "image/png"
	"os"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/torch"
)

// modelExtractor runs a registered model version over image files for eval.
type modelExtractor struct {
	model     *torch.Model
	batchSize int
}

var _ eval.Extractor = (*modelExtractor)(nil)

func (e *modelExtractor) Extract(ctx context.Context, paths []string) ([][]float32, error) {
	features := make([][]float32, 0, len(paths))
	for start := 0; start < len(paths); start += e.batchSize {
		batch := paths[start:min(start+e.batchSize, len(paths))]
		images := make([]image.Image, len(batch))
		for i, path := range batch {
			picture, err := decodeImage(path)
			if err != nil {
				return nil, err
			}
			images[i] = picture
		}
		vectors, err := e.model.Embed(ctx, images)
		if err != nil {
			return nil, err
		}
		features = append(features, vectors...)
	}
	return features, nil
}

func decodeImage(path string) (image.Image, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	picture, _, err := image.Decode(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return picture, nil
}

// openModelExtractor loads a registered model version ("" or "active" = the active one) onto the
// configured torch device, through the same openModel the pipeline uses.
func openModelExtractor(ctx context.Context, options config.Options, version string, batchSize int) (eval.Extractor, func(), error) {
	if batchSize < 1 {
		return nil, nil, fmt.Errorf("eval: batch size %d", batchSize)
	}
	if version == "" {
		version = "active"
	}
	loaded, err := openModel(ctx, options, version)
	if err != nil {
		return nil, nil, fmt.Errorf("eval: model %q: %w", version, err)
	}
	return &modelExtractor{model: loaded.network, batchSize: batchSize}, loaded.Close, nil
}
