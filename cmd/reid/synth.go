package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/synth"
)

func newSynthCommand(g *globals) *cobra.Command {
	command := &cobra.Command{
		Use:   "synth",
		Short: "Make labelled synthetic multi-camera person data from the shared videos' real people",
		Long: "Bodies and backgrounds are harvested from the shared static-camera videos; identities are " +
			"clothing, hair and bags painted onto those bodies; each camera adds its own viewpoint, scale, " +
			"light, colour cast, blur, noise, compression and occlusion. Output is reproducible from --seed.",
	}
	command.AddCommand(newSynthDatasetCommand(g), newSynthVideoCommand(g), newSynthSheetCommand(g))
	return command
}

// harvestLibrary collects the bodies and background plates every synth command draws from.
// synthLibrary checks a synth subcommand's --out and options before the slow harvest, then
// harvests the bodies and backgrounds every synth command draws from.
func (g *globals) synthLibrary(cmd *cobra.Command, name, out string, invalid error) (*synth.Library, error) {
	options, err := g.load(cmd)
	if err != nil {
		return nil, err
	}
	if out == "" {
		return nil, fmt.Errorf("synth %s: --out is required", name)
	}
	if invalid != nil {
		return nil, fmt.Errorf("synth %s: %w", name, invalid)
	}
	return harvestLibrary(cmd.Context(), options)
}

func harvestLibrary(ctx context.Context, options config.Options) (*synth.Library, error) {
	modelsDir := detectorModelsDir(options)
	people, err := synth.HarvestDetector(modelsDir)
	if err != nil {
		return nil, err
	}
	defer people.Close()
	return synth.Harvest(ctx, synth.HarvestOptions{
		Videos:   synth.SharedVideos(options.SharedDir),
		Detector: synth.FromDetector(people),
		Logger:   slog.Default(),
	})
}

func newSynthDatasetCommand(g *globals) *cobra.Command {
	var out string
	var datasetOptions synth.DatasetOptions
	command := &cobra.Command{
		Use:   "dataset --out DIR",
		Short: "Write a Market-1501 layout data set (bounding_box_train, bounding_box_test, query)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			library, err := g.synthLibrary(cmd, "dataset", out, datasetOptions.Validate())
			if err != nil {
				return err
			}
			summary, err := synth.WriteDataset(cmd.Context(), out, library, datasetOptions)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]int{
				"train_images": summary.TrainImages, "train_identities": summary.TrainIdentities,
				"query_images": summary.QueryImages, "gallery_images": summary.GalleryImages,
				"test_identities": summary.TestIdentities,
			})
		},
	}
	flags := command.Flags()
	flags.StringVar(&out, "out", "", "output directory")
	flags.IntVar(&datasetOptions.Identities, "identities", 200, "identities; half train, half test")
	flags.IntVar(&datasetOptions.Cameras, "cameras", 6, "cameras (2 to 9)")
	flags.IntVar(&datasetOptions.PerCamera, "per-camera", 4, "images of an identity in each camera that sees it")
	flags.Uint64Var(&datasetOptions.Seed, "seed", 1, "random seed; the same seed gives the same data set")
	flags.Float64Var(&datasetOptions.Difficulty, "difficulty", 1, "camera nuisance strength, 0.01 (clean) to 4 (harsh)")
	flags.IntVar(&datasetOptions.Distractors, "distractors", 0, "identity-0000 gallery images (0: identities/4, -1: none)")
	return command
}

func newSynthVideoCommand(g *globals) *cobra.Command {
	var out string
	var videoOptions synth.VideoOptions
	command := &cobra.Command{
		Use:   "video --out DIR --cameras C --seconds T",
		Short: "Write camera videos of identities walking from camera to camera, with ground_truth.json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			library, err := g.synthLibrary(cmd, "video", out, videoOptions.Validate())
			if err != nil {
				return err
			}
			truth, err := synth.WriteVideos(cmd.Context(), out, library, videoOptions)
			if err != nil {
				return err
			}
			files := make([]string, len(truth.Cameras))
			for i, camera := range truth.Cameras {
				files[i] = filepath.Join(out, camera.File)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{
				"videos": files, "ground_truth": filepath.Join(out, "ground_truth.json"), "visits": len(truth.Visits),
			})
		},
	}
	flags := command.Flags()
	flags.StringVar(&out, "out", "", "output directory")
	flags.IntVar(&videoOptions.Cameras, "cameras", 3, "cameras, one video each")
	flags.Float64Var(&videoOptions.Seconds, "seconds", 60, "length of each video in seconds")
	flags.IntVar(&videoOptions.Identities, "identities", 0, "people walking through (0: 3 per camera)")
	flags.Uint64Var(&videoOptions.Seed, "seed", 1, "random seed")
	flags.Float64Var(&videoOptions.Difficulty, "difficulty", 1, "camera nuisance strength, 0.01 to 4")
	flags.Float64Var(&videoOptions.FPS, "fps", 10, "frames per second")
	return command
}

func newSynthSheetCommand(g *globals) *cobra.Command {
	var dataset, out string
	var rows, columns int
	command := &cobra.Command{
		Use:   "sheet --dataset DIR --out FILE.png",
		Short: "Write a contact sheet of a data set's test identities, one row each, to look at",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.load(cmd); err != nil {
				return err
			}
			if dataset == "" || out == "" {
				return fmt.Errorf("synth sheet: --dataset and --out are required")
			}
			return synth.WriteContactSheet(dataset, out, rows, columns)
		},
	}
	flags := command.Flags()
	flags.StringVar(&dataset, "dataset", "", "Market-layout data set directory")
	flags.StringVar(&out, "out", "", "PNG file to write")
	flags.IntVar(&rows, "rows", 16, "identities to show")
	flags.IntVar(&columns, "columns", 18, "images per identity")
	return command
}
