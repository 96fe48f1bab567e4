package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/png" // JPEGs go through jpegturbo
	"os"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/internal/jpegturbo"
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

// decodeImage reads an image file; JPEGs go through the embedder's decoder, so that a crop's
// features here are the ones the pipeline stored for it.
func decodeImage(path string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var picture image.Image
	if bytes.HasPrefix(data, []byte{0xFF, 0xD8}) {
		picture, err = jpegturbo.Decode(data)
	} else {
		picture, _, err = image.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return picture, nil
}

// openModelExtractor loads a registered model version ("" or "active" = the active one) onto the
// configured torch device, through the same openModel the pipeline uses.
func openModelExtractor(ctx context.Context, options config.Options, version string, batchSize int) (eval.Extractor, func(), error) {
	if batchSize < 1 {
		return nil, nil, fmt.Errorf("--batch-size %d: must be at least 1", batchSize)
	}
	if version == "" {
		version = "active"
	}
	loaded, err := openModel(ctx, options, version)
	if err != nil {
		return nil, nil, fmt.Errorf("model %q: %w", version, err)
	}
	return &modelExtractor{model: loaded.network, batchSize: batchSize}, loaded.Close, nil
}
