package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/eval"
)

type evalFlags struct {
	dataset, modelVersion          string
	featuresQuery, featuresGallery string
	rerank, asJSON                 bool
	rerankOptions                  eval.RerankOptions
	protocol                       string
	visualize                      int
	out                            string
	batchSize                      int
}

func newEvalCommand(g *globals) *cobra.Command {
	f := &evalFlags{}
	command := &cobra.Command{
		Use:   "eval --dataset DIR --model VERSION [--rerank] [--json] [--visualize N --out DIR]",
		Short: "Measure re-id accuracy on a Market-1501 layout data set (mAP, CMC rank-1/5/10, mINP)",
		Long: `Ranks the gallery (bounding_box_test) for every query image by the Euclidean distance of
L2-normalised features and scores the ranking under the Market-1501 protocol: gallery images of the
query's identity taken by the query's camera are ignored, junk images (identity -1) are dropped,
distractors (identity 0) count as wrong answers.

Features come from a registered model version (--model, run on the configured torch device), or
from files written by reid features (--features-query Q.npy --features-gallery G.npy; names are
read from Q.txt and G.txt beside them, or the rows follow the data set's sorted file names).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEval(cmd, g, f)
		},
	}
	flags := command.Flags()
	flags.StringVar(&f.dataset, "dataset", "", "data set root holding query/ and bounding_box_test/")
	flags.StringVar(&f.modelVersion, "model", "", "registered model version to extract features with (\"active\" for the active one)")
	flags.StringVar(&f.featuresQuery, "features-query", "", "query features .npy (instead of --model)")
	flags.StringVar(&f.featuresGallery, "features-gallery", "", "gallery features .npy (instead of --model)")
	flags.BoolVar(&f.rerank, "rerank", false, "apply k-reciprocal re-ranking")
	flags.IntVar(&f.rerankOptions.K1, "k1", 20, "re-ranking k1")
	flags.IntVar(&f.rerankOptions.K2, "k2", 6, "re-ranking k2")
	flags.Float64Var(&f.rerankOptions.Lambda, "lambda", 0.3, "re-ranking weight of the original distance")
	flags.StringVar(&f.protocol, "protocol", "cross-camera", "cross-camera (Market-1501) or same-camera (true matches only in the query's camera)")
	flags.BoolVar(&f.asJSON, "json", false, "print the metrics as one JSON object")
	flags.IntVar(&f.visualize, "visualize", 0, "write pictures of this many queries with their top 10 (needs --out)")
	flags.StringVar(&f.out, "out", "", "directory for --visualize pictures")
	flags.IntVar(&f.batchSize, "batch-size", 64, "images per forward pass with --model")
	return command
}

func runEval(cmd *cobra.Command, g *globals, f *evalFlags) error {
	options, err := g.load(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if f.visualize > 0 && f.out == "" {
		return fmt.Errorf("eval: --visualize needs --out DIR")
	}
	protocol, err := eval.ParseProtocol(f.protocol)
	if err != nil {
		return err
	}
	useFeatures := f.featuresQuery != "" || f.featuresGallery != ""
	switch {
	case useFeatures && (f.featuresQuery == "" || f.featuresGallery == ""):
		return fmt.Errorf("eval: give both --features-query and --features-gallery")
	case useFeatures && f.modelVersion != "":
		return fmt.Errorf("eval: give either --model or feature files, not both")
	case !useFeatures && (f.dataset == "" || f.modelVersion == ""):
		return fmt.Errorf("eval: give --dataset DIR with --model VERSION, or --features-query and --features-gallery")
	}
	var dataset eval.Dataset
	if f.dataset != "" {
		if dataset, err = eval.Load(f.dataset); err != nil {
			return err
		}
		slog.Info("data set", "root", f.dataset, "query", len(dataset.Query), "gallery", len(dataset.Gallery),
			"junk_dropped", dataset.JunkDropped[1]+dataset.JunkDropped[2])
	}
	var queryFeatures, galleryFeatures [][]float32
	var query, gallery []eval.Item
	began := time.Now()
	if useFeatures {
		if queryFeatures, query, err = labelledFeatures(f.featuresQuery, dataset.Query, f.dataset != ""); err != nil {
			return err
		}
		if galleryFeatures, gallery, err = labelledFeatures(f.featuresGallery, dataset.Gallery, f.dataset != ""); err != nil {
			return err
		}
	} else {
		extractor, closeExtractor, err := openModelExtractor(ctx, options, f.modelVersion, f.batchSize)
		if err != nil {
			return err
		}
		defer closeExtractor()
		query, gallery = dataset.Query, dataset.Gallery
		if queryFeatures, err = extractor.Extract(ctx, eval.Paths(query)); err != nil {
			return fmt.Errorf("eval: query features: %w", err)
		}
		if galleryFeatures, err = extractor.Extract(ctx, eval.Paths(gallery)); err != nil {
			return fmt.Errorf("eval: gallery features: %w", err)
		}
		slog.Info("features extracted", "images", len(query)+len(gallery), "took", time.Since(began).Round(time.Millisecond))
	}
	began = time.Now()
	metrics, distances, err := eval.EvaluateFeatures(ctx, queryFeatures, galleryFeatures, eval.Labels(query), eval.Labels(gallery),
		eval.Options{Rerank: f.rerank, RerankOptions: f.rerankOptions, Protocol: protocol})
	if err != nil {
		return err
	}
	slog.Info("evaluated", "protocol", protocol, "queries", metrics.Queries, "skipped_queries", metrics.Skipped, "rerank", f.rerank,
		"took", time.Since(began).Round(time.Millisecond))
	if f.visualize > 0 {
		written, err := eval.Visualize(ctx, f.out, distances, query, gallery, f.visualize, 10)
		if err != nil {
			return err
		}
		slog.Info("pictures written", "count", len(written), "dir", f.out)
	}
	return printMetrics(cmd.OutOrStdout(), metrics, f.asJSON)
}

// labelledFeatures reads a feature file and labels its rows (see eval.FeatureFile.Items).
func labelledFeatures(path string, split []eval.Item, haveDataset bool) ([][]float32, []eval.Item, error) {
	file, err := eval.ReadFeatureFile(path)
	if err != nil {
		return nil, nil, err
	}
	if !haveDataset {
		split = nil
	}
	return file.Items(split)
}

func printMetrics(w io.Writer, metrics eval.Metrics, asJSON bool) error {
	if asJSON {
		data, err := json.Marshal(metrics)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	_, err := fmt.Fprintf(w, "queries: %d (skipped %d)\nmAP:     %.2f%%\nrank-1:  %.2f%%\nrank-5:  %.2f%%\nrank-10: %.2f%%\nmINP:    %.2f%%\n",
		metrics.Queries, metrics.Skipped, 100*metrics.MAP, 100*metrics.Rank1, 100*metrics.Rank5, 100*metrics.Rank10, 100*metrics.MINP)
	return err
}
