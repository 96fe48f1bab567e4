package synth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gocv.io/x/gocv"
)

// contactSheet lays tiles out in rows of columns cells of cellWidth x cellHeight, each tile
// scaled to fit its cell, on a grey ground.
func contactSheet(tiles []raster, columns, cellWidth, cellHeight int) (raster, error) {
	if len(tiles) == 0 || columns <= 0 {
		return raster{}, errors.New("contact sheet: nothing to lay out")
	}
	rows := (len(tiles) + columns - 1) / columns
	const gap = 2
	sheet := newRaster(columns*(cellWidth+gap)+gap, rows*(cellHeight+gap)+gap)
	for i := range sheet.Pix {
		sheet.Pix[i] = 96
	}
	for i, tile := range tiles {
		scale := min(float64(cellWidth)/float64(tile.Width), float64(cellHeight)/float64(tile.Height))
		width, height := max(int(float64(tile.Width)*scale), 1), max(int(float64(tile.Height)*scale), 1)
		scaled, err := tile.resized(width, height)
		if err != nil {
			return raster{}, err
		}
		x0 := gap + (i%columns)*(cellWidth+gap) + (cellWidth-width)/2
		y0 := gap + (i/columns)*(cellHeight+gap) + (cellHeight-height)/2
		for y := 0; y < height; y++ {
			copy(sheet.Pix[((y0+y)*sheet.Width+x0)*3:((y0+y)*sheet.Width+x0+width)*3], scaled.Pix[y*width*3:(y+1)*width*3])
		}
	}
	return sheet, nil
}

// writePNG writes r as a PNG file.
func writePNG(path string, r raster) error {
	mat, err := r.mat()
	if err != nil {
		return err
	}
	defer mat.Close()
	if !gocv.IMWrite(path, mat) {
		return fmt.Errorf("write %s failed", path)
	}
	return nil
}

// WriteContactSheet writes a PNG of a Market-layout data set for people to look at: one row per
// identity (the first rows identities of the query and test gallery, in name order), up to
// columns images each, sorted by camera.
func WriteContactSheet(datasetDir, out string, rows, columns int) error {
	byIdentity := map[int][]string{}
	for _, folder := range []string{"query", "bounding_box_test"} {
		entries, err := os.ReadDir(filepath.Join(datasetDir, folder))
		if err != nil {
			return fmt.Errorf("contact sheet: %w", err)
		}
		for _, entry := range entries {
			name := entry.Name()
			label, _, ok := strings.Cut(name, "_")
			id, err := strconv.Atoi(label)
			if !ok || err != nil || id <= 0 || !strings.HasSuffix(name, ".jpg") {
				continue
			}
			byIdentity[id] = append(byIdentity[id], filepath.Join(datasetDir, folder, name))
		}
	}
	var ids []int
	for id := range byIdentity {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > rows {
		ids = ids[:rows]
	}
	var tiles []raster
	for _, id := range ids {
		paths := byIdentity[id]
		slices.SortFunc(paths, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
		for column := 0; column < columns; column++ {
			if column >= len(paths) {
				tiles = append(tiles, newRaster(CropWidth, CropHeight))
				continue
			}
			mat := gocv.IMRead(paths[column], gocv.IMReadColor)
			tile, err := rasterFromMat(mat)
			mat.Close()
			if err != nil {
				return fmt.Errorf("contact sheet %s: %w", paths[column], err)
			}
			tiles = append(tiles, tile)
		}
	}
	sheet, err := contactSheet(tiles, columns, CropWidth, CropHeight)
	if err != nil {
		return err
	}
	return writePNG(out, sheet)
}
