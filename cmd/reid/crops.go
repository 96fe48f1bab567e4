package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"

	"github.com/spf13/cobra"
	"gocv.io/x/gocv"

	"github.com/reid-project/reid/cropstore"
)

func newCropsCommand(g *globals) *cobra.Command {
	command := &cobra.Command{Use: "crops", Short: "Look at the stored person crops"}
	var (
		camera  string
		out     string
		limit   int
		columns int
	)
	sheet := &cobra.Command{
		Use:   "sheet",
		Short: "Draw a contact sheet (PNG) of one camera's crops, labelled with track ids",
		Long: "Draws up to --max crops of --camera, spread evenly over everything stored, in time order,\n" +
			"each labelled with its track id, into one image.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			if limit < 1 || columns < 1 {
				return errors.New("--max and --columns must be >= 1")
			}
			store, err := openCropStore(cmd.Context(), options)
			if err != nil {
				return err
			}
			count, err := drawContactSheet(cmd.Context(), store, camera, out, limit, columns)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d crops of camera %s drawn to %s\n", count, camera, out)
			return nil
		},
	}
	flags := sheet.Flags()
	flags.StringVar(&camera, "camera", "", "camera id (required)")
	flags.StringVar(&out, "out", "sheet.png", "output image (.png or .jpg)")
	flags.IntVar(&limit, "max", 120, "most crops to draw")
	flags.IntVar(&columns, "columns", 15, "crops per row")
	_ = sheet.MarkFlagRequired("camera")
	command.AddCommand(sheet, newCropsShowCommand(g))
	return command
}

// newCropsShowCommand prints crops' metadata: what an operator needs beside an image (its
// detector score, track, box) without a tool that reads JPEG comments.
func newCropsShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID|FILE...",
		Short: "Print stored crops' metadata (camera, time, frame, box, score, track, detector) as JSON lines",
		Long: "Each argument is a crop id, looked up in the crop store, or a crop's .jpg file (one copied out\n" +
			"of the store keeps its metadata inside). One JSON object per line, in argument order.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			var store cropStore
			encoder := json.NewEncoder(cmd.OutOrStdout())
			for _, arg := range args {
				var record cropstore.CropRecord
				if data, readErr := os.ReadFile(arg); readErr == nil {
					if record, err = cropstore.DecodeFile(data); err != nil {
						return fmt.Errorf("%s: %w", arg, err)
					}
				} else {
					if store == nil {
						if store, err = openCropStore(cmd.Context(), options); err != nil {
							return err
						}
					}
					if record, err = store.Metadata(cmd.Context(), arg); err != nil {
						return err
					}
				}
				if err := encoder.Encode(record); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// Cell size of one crop on the sheet, plus a strip for its label.
const (
	sheetCellWidth  = 64
	sheetCellHeight = 128
	sheetLabel      = 14
)

// drawContactSheet tiles up to limit of camera's crops, evenly spread over the stored ones.
func drawContactSheet(ctx context.Context, store cropStore, camera, out string, limit, columns int) (int, error) {
	var records []cropstore.CropRecord
	err := store.Walk(ctx, cropstore.Filter{Camera: camera}, func(record cropstore.CropRecord) error {
		records = append(records, record)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(records) == 0 {
		return 0, fmt.Errorf("no crops stored for camera %q under %s", camera, store.Location())
	}
	if len(records) > limit {
		picked := make([]cropstore.CropRecord, limit)
		for i := range picked {
			picked[i] = records[i*len(records)/limit]
		}
		records = picked
	}
	columns = min(columns, len(records))
	rows := (len(records) + columns - 1) / columns
	cellHeight := sheetCellHeight + sheetLabel
	sheet := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(40, 40, 40, 0), rows*cellHeight, columns*sheetCellWidth, gocv.MatTypeCV8UC3)
	defer sheet.Close()
	for i, record := range records {
		image, err := store.Image(ctx, record.ID)
		if err != nil {
			return 0, err
		}
		if err := drawCell(&sheet, image, i%columns*sheetCellWidth, i/columns*cellHeight, fmt.Sprintf("t%d", cropstore.TrackNumber(record.Track))); err != nil {
			return 0, fmt.Errorf("crop %s: %w", record.ID, err)
		}
	}
	if !gocv.IMWrite(out, sheet) {
		return 0, fmt.Errorf("cannot write %s (extension .png or .jpg, writable directory?)", out)
	}
	return len(records), nil
}

func drawCell(sheet *gocv.Mat, jpeg []byte, x, y int, label string) error {
	crop, err := gocv.IMDecode(jpeg, gocv.IMReadColor)
	if err != nil {
		return err
	}
	defer crop.Close()
	if crop.Empty() {
		return errors.New("image does not decode")
	}
	cell := sheet.Region(image.Rect(x, y, x+sheetCellWidth, y+sheetCellHeight))
	gocv.Resize(crop, &cell, image.Pt(sheetCellWidth, sheetCellHeight), 0, 0, gocv.InterpolationArea)
	cell.Close()
	gocv.PutText(sheet, label, image.Pt(x+2, y+sheetCellHeight+sheetLabel-3), gocv.FontHersheyPlain, 0.9, color.RGBA{R: 255, G: 255, B: 255}, 1)
	return nil
}
