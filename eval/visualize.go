package eval

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // data set images
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/reid-project/reid/internal/npy"
)

// Picture layout: every image is scaled into a tile and framed.
const (
	tileWidth  = 64
	tileHeight = 128
	frame      = 4
	gap        = 12
)

var (
	queryFrame   = color.RGBA{40, 90, 230, 255}
	correctFrame = color.RGBA{20, 180, 40, 255}
	wrongFrame   = color.RGBA{220, 30, 30, 255}
	background   = color.RGBA{255, 255, 255, 255}
)

// Visualize writes one PNG per chosen query into outDir: the query (blue frame), then its top
// gallery items after the protocol's removals, framed green when the identity is right and red
// when not. It picks count queries that have a true match, spread evenly over the query list, and
// returns the written paths. An unreadable image is drawn as a grey tile and logged.
func Visualize(ctx context.Context, outDir string, distances npy.Matrix, query, gallery []Item, count, top int) ([]string, error) {
	if distances.Rows != len(query) || distances.Cols != len(gallery) {
		return nil, fmt.Errorf("eval: distance matrix %dx%d for %d queries and %d gallery items",
			distances.Rows, distances.Cols, len(query), len(gallery))
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	galleryLabels := Labels(gallery)
	var candidates []int
	for q, item := range query {
		for _, label := range galleryLabels {
			if item.PID > 0 && label.PID == item.PID && label.Camera != item.Camera {
				candidates = append(candidates, q)
				break
			}
		}
	}
	count = min(count, len(candidates))
	var written []string
	for n := range count {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		q := candidates[n*len(candidates)/count]
		ranked := rankedList(distances.Row(q), query[q].Label, galleryLabels, top)
		canvas := image.NewRGBA(image.Rect(0, 0, (1+len(ranked))*(tileWidth+2*frame)+gap*len(ranked)+gap, tileHeight+2*frame))
		draw.Draw(canvas, canvas.Bounds(), &image.Uniform{background}, image.Point{}, draw.Src)
		drawTile(canvas, 0, query[q].Path, queryFrame)
		x := tileWidth + 2*frame + 2*gap
		for _, g := range ranked {
			border := wrongFrame
			if gallery[g].PID == query[q].PID {
				border = correctFrame
			}
			drawTile(canvas, x, gallery[g].Path, border)
			x += tileWidth + 2*frame + gap
		}
		name := strings.TrimSuffix(filepath.Base(query[q].Path), filepath.Ext(query[q].Path))
		path := filepath.Join(outDir, fmt.Sprintf("query_%04d_%s.png", q, name))
		if err := writePNG(path, canvas); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// rankedList returns the top gallery indices by distance (ties by index) without the items the
// protocol ignores for this query.
func rankedList(row []float32, query Label, gallery []Label, top int) []int {
	var kept []int
	for g, label := range gallery {
		if label.PID < 0 || (label.PID == query.PID && label.Camera == query.Camera) {
			continue
		}
		kept = append(kept, g)
	}
	sort.SliceStable(kept, func(a, b int) bool { return row[kept[a]] < row[kept[b]] })
	return kept[:min(top, len(kept))]
}

func drawTile(canvas *image.RGBA, x int, path string, border color.RGBA) {
	draw.Draw(canvas, image.Rect(x, 0, x+tileWidth+2*frame, tileHeight+2*frame), &image.Uniform{border}, image.Point{}, draw.Src)
	inner := image.Rect(x+frame, frame, x+frame+tileWidth, frame+tileHeight)
	picture, err := readImage(path)
	if err != nil {
		slog.Warn("eval: cannot draw image", "path", path, "err", err)
		draw.Draw(canvas, inner, &image.Uniform{color.RGBA{128, 128, 128, 255}}, image.Point{}, draw.Src)
		return
	}
	scaleInto(canvas, inner, picture)
}

func readImage(path string) (image.Image, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	picture, _, err := image.Decode(file)
	return picture, err
}

// scaleInto draws src stretched over dst's rectangle r, averaging the source pixels that fall
// into each destination pixel (crops are larger than tiles, so this is a downscale).
func scaleInto(dst *image.RGBA, r image.Rectangle, src image.Image) {
	bounds := src.Bounds()
	for y := range r.Dy() {
		y0 := bounds.Min.Y + y*bounds.Dy()/r.Dy()
		y1 := max(bounds.Min.Y+(y+1)*bounds.Dy()/r.Dy(), y0+1)
		for x := range r.Dx() {
			x0 := bounds.Min.X + x*bounds.Dx()/r.Dx()
			x1 := max(bounds.Min.X+(x+1)*bounds.Dx()/r.Dx(), x0+1)
			var red, green, blue, n uint32
			for sy := y0; sy < y1; sy++ {
				for sx := x0; sx < x1; sx++ {
					cr, cg, cb, _ := src.At(sx, sy).RGBA()
					red, green, blue, n = red+cr, green+cg, blue+cb, n+1
				}
			}
			dst.SetRGBA(r.Min.X+x, r.Min.Y+y, color.RGBA{uint8(red / n >> 8), uint8(green / n >> 8), uint8(blue / n >> 8), 255})
		}
	}
}

func writePNG(path string, picture image.Image) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if err := png.Encode(file, picture); err != nil {
		file.Close()
		return fmt.Errorf("eval: %s: %w", path, err)
	}
	return file.Close()
}
