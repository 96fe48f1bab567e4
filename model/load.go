package model

import (
	"context"
	"fmt"
	"strconv"

	"github.com/reid-project/reid/torch"
)

// Weight formats a version can hold.
const (
	// FormatPyTorch is a torch.save zip state dict, as imported from torchvision or torchreid.
	FormatPyTorch = "pytorch"
	// FormatReid is libtorch's own archive, as our trainer saves it.
	FormatReid = "reid"
)

// ModelOptions turns a version's metadata into the torch options that rebuild its network.
func (v Version) ModelOptions() (torch.ModelOptions, error) {
	arch, err := torch.ParseArch(v.Arch)
	if err != nil {
		return torch.ModelOptions{}, fmt.Errorf("model %s: %w", v.ID, err)
	}
	options := torch.ModelOptions{
		Arch:        arch,
		Pooling:     v.Options["pooling"],
		Neck:        v.Options["neck"],
		InputHeight: v.InputHeight,
		InputWidth:  v.InputWidth,
		Mean:        v.Mean,
		Std:         v.Std,
	}
	if stride := v.Options["last_stride"]; stride != "" {
		if options.LastStride, err = strconv.Atoi(stride); err != nil {
			return torch.ModelOptions{}, fmt.Errorf("model %s: last_stride %q: %w", v.ID, stride, err)
		}
	}
	return options.WithDefaults()
}

// Load builds the version's network on device and loads its weights. flip turns on flip
// averaging for embeddings. The caller closes the model.
func Load(ctx context.Context, device *torch.Device, version Version, flip bool) (*torch.Model, error) {
	options, err := version.ModelOptions()
	if err != nil {
		return nil, err
	}
	options.FlipAverage = flip
	network, err := device.NewModel(ctx, options)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", version.ID, err)
	}
	switch version.WeightsFormat {
	case FormatPyTorch, "":
		report, err := network.LoadWeights(ctx, version.WeightsPath())
		if err == nil {
			err = checkMissing(report.Missing, version.MissingKeys)
		}
		if err != nil {
			network.Close()
			return nil, fmt.Errorf("model %s: %w", version.ID, err)
		}
	case FormatReid:
		if err := network.Restore(ctx, version.WeightsPath()); err != nil {
			network.Close()
			return nil, fmt.Errorf("model %s: %w", version.ID, err)
		}
	default:
		network.Close()
		return nil, fmt.Errorf("model %s: unknown weights format %q", version.ID, version.WeightsFormat)
	}
	return network, nil
}

// MetadataFor describes a network built with options, for Register.
func MetadataFor(options torch.ModelOptions) Metadata {
	metadata := Metadata{
		Arch:        string(options.Arch),
		Dim:         options.Arch.Dim(),
		InputHeight: options.InputHeight,
		InputWidth:  options.InputWidth,
		Mean:        options.Mean,
		Std:         options.Std,
	}
	if options.Arch == torch.ArchResNet50 {
		metadata.Options = map[string]string{
			"last_stride": strconv.Itoa(options.LastStride),
			"pooling":     options.Pooling,
			"neck":        options.Neck,
		}
	}
	return metadata
}

// checkMissing accepts only the missing tensors the import recorded (a BN neck that ImageNet
// weights lack, say): anything else means the file changed or belongs to another network.
func checkMissing(missing, recorded []string) error {
	allowed := make(map[string]bool, len(recorded))
	for _, name := range recorded {
		allowed[name] = true
	}
	for _, name := range missing {
		if !allowed[name] {
			return fmt.Errorf("weights lack model tensor %s", name)
		}
	}
	return nil
}
