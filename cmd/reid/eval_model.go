package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // data set crops
	_ "image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/model"
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

// openModelExtractor loads a model version from the registry under <data_dir>/models onto the
// configured torch device. version "active" (or "") means the active version.
func openModelExtractor(ctx context.Context, options config.Options, version string, batchSize int) (eval.Extractor, func(), error) {
	if batchSize < 1 {
		return nil, nil, fmt.Errorf("eval: batch size %d", batchSize)
	}
	registry, err := model.Open(filepath.Join(options.DataDir, "models"))
	if err != nil {
		return nil, nil, fmt.Errorf("eval: model registry: %w", err)
	}
	var entry model.Version
	if version == "" || version == "active" {
		entry, err = registry.Active()
	} else {
		entry, err = registry.Get(version)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("eval: model %q: %w", version, err)
	}
	modelOptions := torch.ModelOptions{
		Arch:        torch.Arch(entry.Arch),
		Pooling:     entry.Options["pooling"],
		Neck:        entry.Options["neck"],
		InputHeight: entry.InputHeight,
		InputWidth:  entry.InputWidth,
		Mean:        entry.Mean,
		Std:         entry.Std,
	}
	if stride := entry.Options["last_stride"]; stride != "" {
		if modelOptions.LastStride, err = strconv.Atoi(stride); err != nil {
			return nil, nil, fmt.Errorf("eval: model %s: last_stride %q: %w", entry.ID, stride, err)
		}
	}
	device, err := torch.Open(torch.Params{Device: options.Torch.Device, Threads: options.Torch.Threads})
	if err != nil {
		return nil, nil, fmt.Errorf("eval: %w", err)
	}
	network, err := device.NewModel(ctx, modelOptions)
	if err != nil {
		device.Close()
		return nil, nil, fmt.Errorf("eval: model %s: %w", entry.ID, err)
	}
	closeAll := func() {
		network.Close()
		device.Close()
	}
	switch entry.WeightsFormat {
	case "reid":
		err = network.Restore(ctx, entry.WeightsPath())
	case "pytorch", "":
		var report torch.LoadReport
		report, err = network.LoadWeights(ctx, entry.WeightsPath())
		if err == nil && len(report.Missing) > 0 {
			slog.Warn("model weights incomplete", "version", entry.ID, "missing", len(report.Missing))
		}
	default:
		err = errors.New("unknown weights format " + strconv.Quote(entry.WeightsFormat))
	}
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("eval: model %s: %w", entry.ID, err)
	}
	slog.Info("model loaded", "version", entry.ID, "arch", entry.Arch, "device", device.Name())
	return &modelExtractor{model: network, batchSize: batchSize}, closeAll, nil
}
