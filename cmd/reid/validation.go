package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
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
			crops, err := eval.CropsOfSightings(ctx, store, ids, perTrack)
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
