package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/lookup"
)

func newSearchCommand(g *globals) *cobra.Command {
	var (
		imagePath string
		k         int
		cameras   []string
		exclude   []string
		minScore  float32
		byCrop    bool
		asJSON    bool
	)
	command := &cobra.Command{
		Use:   "search --image FILE [--k 10] [--camera-not ID] [--json]",
		Short: "Find where else the person in an image was seen, in the active gallery",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			picture, err := decodeImage(imagePath)
			if err != nil {
				return err
			}
			vectors, err := openIndex(ctx, options)
			if err != nil {
				return err
			}
			defer vectors.Close()
			active, err := vectors.Active(ctx)
			if errors.Is(err, index.ErrNoActiveVersion) {
				return fmt.Errorf("%w: nothing is searchable yet; reid run (or reid embed) fills the active model's gallery, reid index backfill VERSION --activate fills one from the crop store", err)
			}
			if err != nil {
				return err
			}
			// The query must be embedded by the model that made the active gallery.
			loaded, err := openModel(ctx, options, active.Name)
			if err != nil {
				return err
			}
			defer loaded.Close()
			embedding, err := loaded.network.Embed(ctx, []image.Image{picture})
			if err != nil {
				return err
			}
			matches, err := lookup.Search(ctx, vectors, active.Name, embedding[0], lookup.SearchOptions{
				K:      k,
				Filter: index.Filter{Cameras: cameras, ExcludeCameras: exclude, MinScore: minScore},
				ByCrop: byCrop,
			})
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"model": active.Name, "matches": matches})
			}
			table := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(table, "RANK\tSCORE\tTRACK SCORE\tCAMERA\tTIME\tTRACK\tCROP")
			for rank, match := range matches {
				trackScore := "-"
				if match.TrackScore != nil {
					trackScore = fmt.Sprintf("%.3f", *match.TrackScore)
				}
				fmt.Fprintf(table, "%d\t%.3f\t%s\t%s\t%s\t%d\t%s\n", rank+1, match.Score, trackScore, match.Camera,
					match.Time.Format("2006-01-02 15:04:05.000"), cropstore.TrackNumber(match.Track), match.CropID)
			}
			return table.Flush()
		},
	}
	flags := command.Flags()
	flags.StringVar(&imagePath, "image", "", "JPEG or PNG of one person")
	flags.IntVar(&k, "k", 10, "how many matches")
	flags.StringSliceVar(&cameras, "camera", nil, "only these cameras")
	flags.StringSliceVar(&exclude, "camera-not", nil, "not these cameras")
	flags.Float32Var(&minScore, "min-score", 0, "drop matches below this cosine similarity")
	flags.BoolVar(&byCrop, "by-crop", false, "order crop by crop instead of by track consensus (each crop scored with its whole track)")
	flags.BoolVar(&asJSON, "json", false, "print JSON")
	_ = command.MarkFlagRequired("image")
	return command
}
