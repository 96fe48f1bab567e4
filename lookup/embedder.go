package lookup

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"

	"github.com/reid-project/reid/internal/jpegturbo"
)

// ImageModel embeds decoded images; *torch.Model implements it.
type ImageModel interface {
	Embed(ctx context.Context, images []image.Image) ([][]float32, error)
}

// DecodingEmbedder adapts an ImageModel to Embedder by decoding each JPEG or PNG first.
func DecodingEmbedder(model ImageModel) Embedder { return decodingEmbedder{model: model} }

type decodingEmbedder struct{ model ImageModel }

func (e decodingEmbedder) Embed(ctx context.Context, images [][]byte) ([][]float32, error) {
	decoded := make([]image.Image, len(images))
	for i, data := range images {
		var err error
		if bytes.HasPrefix(data, pngMagic) {
			decoded[i], err = png.Decode(bytes.NewReader(data))
		} else {
			decoded[i], err = jpegturbo.Decode(data)
		}
		if err != nil {
			return nil, fmt.Errorf("decode image %d: %w", i, err)
		}
	}
	return e.model.Embed(ctx, decoded)
}
