package lookup

import (
	"bytes"
	"fmt"
	"image"
	"image/png"

	"github.com/reid-project/reid/internal/jpegturbo"
)

// decodeImage decodes a JPEG the way the embedder stage decodes every stored crop (libjpeg-turbo),
// so a crop searched by its file gets the vector stored for it, or a PNG.
func decodeImage(data []byte) (image.Image, error) {
	if bytes.HasPrefix(data, pngMagic) {
		picture, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("png: %w", err)
		}
		return picture, nil
	}
	return jpegturbo.Decode(data)
}
