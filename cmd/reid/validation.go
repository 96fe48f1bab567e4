package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
)

func newValidationCommand(g *globals) *cobra.Command {
	command := &cobra.Command{
		Use:   "validation",
		Short: "Build the site's labelled validation set from stored crops, for reid eval and reid train --validate",
		Long: `The validation set is a Market-1501 layout data set of the site's own people (default
<data_dir>/validation, or trainer.validation_dir), which reid eval --dataset scores a model on and
reid train --validate uses to promote only a model that is not worse. It is built one person at a
time from crops someone has looked at, in the lookup page or with reid search, and found to show
the same person on two or more cameras.`,
	}
	var dir string
	var perTrack int
	var note string
	add := &cobra.Command{
		Use:   "add CROP_ID... [--per-track 4] [--note TEXT]",
		Short: "Add one person, seen in these crops (each brings its track), to the validation set",
		Long: `Each crop id (as the lookup page shows it, or #crop=ID in its address) brings up to --per-track
crops of its track, spread over it; untracked crops come alone. The crops must come from at least
two cameras. One crop of each camera becomes a query, the rest the gallery. A crop already in the
set is refused.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			if perTrack < 1 {
				return fmt.Errorf("--per-track must be at least 1, not %d", perTrack)
			}
			ctx := cmd.Context()
			store, err := openCropStore(ctx, options)
			if err != nil {
				return err
			}
			set, err := eval.OpenLabelledSet(validationDir(options, dir))
			if err != nil {
				return err
			}
			crops, err := sightingCrops(ctx, store, ids, perTrack)
			if err != nil {
				return err
			}
			person, err := set.AddPerson(crops, note)
			if err != nil {
				return err
			}
			cameras := slices.Sorted(maps.Keys(person.Crops))
			fmt.Fprintf(cmd.OutOrStdout(), "person %04d: %d crops from %v, in %s (%s)\n", person.PID, len(crops), cameras, set.Root, set.Summary())
			return nil
		},
	}
	add.Flags().IntVar(&perTrack, "per-track", 4, "crops taken from each crop's track, spread over it")
	add.Flags().StringVar(&note, "note", "", "a note kept with the person (who labelled it, why)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the people of the validation set",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			set, err := eval.OpenLabelledSet(validationDir(options, dir))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, person := range set.People {
				fmt.Fprintf(out, "%04d", person.PID)
				for _, camera := range slices.Sorted(maps.Keys(person.Crops)) {
					fmt.Fprintf(out, "\t%s %d", camera, len(person.Crops[camera]))
				}
				if person.Note != "" {
					fmt.Fprintf(out, "\t%q", person.Note)
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "%s: %s\n", set.Root, set.Summary())
			return nil
		},
	}
	command.PersistentFlags().StringVar(&dir, "dir", "", "the validation set (default trainer.validation_dir, else <data_dir>/validation)")
	command.AddCommand(add, list)
	return command
}

// validationDir is where the site's validation set lives.
func validationDir(options config.Options, flag string) string {
	switch {
	case flag != "":
		return flag
	case options.Trainer.ValidationDir != "":
		return options.Trainer.ValidationDir
	}
	return filepath.Join(options.DataDir, "validation")
}

// trackSpan bounds how far from a named crop the rest of its track is looked for.
const trackSpan = 10 * time.Minute

// sightingCrops reads the crops ids name, each with up to perTrack crops of its track (itself among
// them), and marks one crop of each camera (the middle one of the camera's first sighting named)
// as a query.
func sightingCrops(ctx context.Context, store cropStore, ids []string, perTrack int) ([]eval.LabelledCrop, error) {
	var crops []eval.LabelledCrop
	seen := map[string]bool{}
	queried := map[string]bool{}
	for _, id := range ids {
		named, err := store.Metadata(ctx, id)
		if err != nil {
			return nil, err
		}
		sighting := []cropstore.CropRecord{named}
		if named.Track > 0 {
			sighting = sighting[:0]
			filter := cropstore.Filter{Camera: named.Camera, From: named.Time.Add(-trackSpan), To: named.Time.Add(trackSpan)}
			err := store.Walk(ctx, filter, func(record cropstore.CropRecord) error {
				if record.Track == named.Track {
					sighting = append(sighting, record)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			sighting = spread(sighting, perTrack)
			// The crop someone looked at is one of them.
			if !slices.ContainsFunc(sighting, func(record cropstore.CropRecord) bool { return record.ID == named.ID }) {
				sighting[len(sighting)/2] = named
				sort.SliceStable(sighting, func(i, j int) bool { return sighting[i].Time.Before(sighting[j].Time) })
			}
		}
		query := -1
		if !queried[named.Camera] {
			query = len(sighting) / 2
			queried[named.Camera] = true
		}
		for i, record := range sighting {
			if seen[record.ID] {
				continue // two crops of one track named
			}
			seen[record.ID] = true
			image, err := store.Image(ctx, record.ID)
			if err != nil {
				return nil, err
			}
			crops = append(crops, eval.LabelledCrop{CropID: record.ID, Camera: record.Camera, JPEG: image, Query: i == query})
		}
	}
	sort.SliceStable(crops, func(i, j int) bool { return crops[i].Camera < crops[j].Camera })
	return crops, nil
}

// spread keeps at most n records, evenly spaced over them (they are in time order).
func spread(records []cropstore.CropRecord, n int) []cropstore.CropRecord {
	if len(records) <= n {
		return records
	}
	kept := make([]cropstore.CropRecord, n)
	for i := range n {
		kept[i] = records[i*len(records)/n]
	}
	return kept
}
