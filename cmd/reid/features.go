package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/internal/npy"
)

func newFeaturesCommand(g *globals) *cobra.Command {
	var version, imagesDir, out string
	var batchSize int
	command := &cobra.Command{
		Use:   "features --images DIR --out F.npy [--model VERSION]",
		Short: "Embed every image in a directory into an N x D float32 .npy (names in F.txt)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			paths, err := imageFiles(imagesDir)
			if err != nil {
				return err
			}
			if len(paths) == 0 {
				return fmt.Errorf("features: no .jpg, .jpeg or .png files in %s", imagesDir)
			}
			extractor, closeModel, err := openModelExtractor(cmd.Context(), options, version, batchSize)
			if err != nil {
				return err
			}
			defer closeModel()
			vectors, err := extractor.Extract(cmd.Context(), paths)
			if err != nil {
				return err
			}
			matrix, err := npy.FromRows(vectors)
			if err != nil {
				return err
			}
			if err := npy.WriteFile(out, matrix); err != nil {
				return err
			}
			names := make([]string, len(paths))
			for i, path := range paths {
				names[i] = filepath.Base(path)
			}
			namesPath := strings.TrimSuffix(out, filepath.Ext(out)) + ".txt"
			if err := os.WriteFile(namesPath, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d x %d features to %s, names to %s\n", matrix.Rows, matrix.Cols, out, namesPath)
			return nil
		},
	}
	flags := command.Flags()
	flags.StringVar(&version, "model", "", "model version (default: the active one)")
	flags.StringVar(&imagesDir, "images", "", "directory of crop images")
	flags.StringVar(&out, "out", "features.npy", "output .npy file")
	flags.IntVar(&batchSize, "batch", 32, "images per forward pass")
	_ = command.MarkFlagRequired("images")
	return command
}

// imageFiles lists the JPEG and PNG files of dir in file-name order.
func imageFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, entry := range entries {
		switch strings.ToLower(filepath.Ext(entry.Name())) {
		case ".jpg", ".jpeg", ".png":
			if !entry.IsDir() {
				paths = append(paths, filepath.Join(dir, entry.Name()))
			}
		}
	}
	sort.Strings(paths)
	return paths, nil
}
