package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/cluster"
	"github.com/reid-project/reid/internal/npy"
)

func newClusterCommand(g *globals) *cobra.Command {
	var features, out string
	var options cluster.Options
	command := &cobra.Command{
		Use:   "cluster --features F.npy --out labels.txt",
		Short: "Pseudo-label features the Cluster Contrast way (k-reciprocal Jaccard distance + DBSCAN)",
		Long: `Reads an N x D float32 .npy feature matrix (as written by reid features), computes the
Jaccard distance over k-reciprocal neighbours (found on the torch device) and runs DBSCAN on
it. Writes one label per row
(-1 for outliers) and prints the cluster count, outlier ratio and cluster sizes, to help choose eps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings, err := g.load(cmd)
			if err != nil {
				return err
			}
			if features == "" || out == "" {
				return fmt.Errorf("cluster: --features and --out are required")
			}
			matrix, err := npy.ReadFile(features)
			if err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
			// The neighbour search runs on the torch device (torch.device): its BLAS, or a GPU.
			device, err := openDevice(settings)
			if err != nil {
				return err
			}
			defer device.Close()
			options.Neighbors = device.NearestNeighbors
			began := time.Now()
			labels, _, err := cluster.Run(cmd.Context(), matrix.RowSlices(), options)
			if err != nil {
				return err
			}
			slog.Info("clustered", "points", len(labels), "took", time.Since(began).Round(time.Millisecond))
			if err := writeLabels(out, labels); err != nil {
				return err
			}
			printSummary(cmd.OutOrStdout(), cluster.Summarize(labels))
			return nil
		},
	}
	flags := command.Flags()
	flags.StringVar(&features, "features", "", "N x D float32 .npy feature matrix")
	flags.StringVar(&out, "out", "", "labels file to write, one label per row (-1 = outlier)")
	flags.IntVar(&options.K1, "k1", 30, "k-reciprocal neighbourhood size")
	flags.IntVar(&options.K2, "k2", 6, "local query expansion size")
	flags.Float64Var(&options.Eps, "eps", 0.6, "DBSCAN radius on the Jaccard distance, 0 < eps < 1")
	flags.IntVar(&options.MinSamples, "min-samples", 4, "DBSCAN core-point threshold (counting the point itself)")
	return command
}

func writeLabels(path string, labels []int) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	writer := bufio.NewWriter(file)
	for _, label := range labels {
		writer.WriteString(strconv.Itoa(label))
		writer.WriteByte('\n')
	}
	if err := writer.Flush(); err != nil {
		file.Close()
		return fmt.Errorf("cluster: %s: %w", path, err)
	}
	return file.Close()
}

func printSummary(w io.Writer, summary cluster.Summary) {
	fmt.Fprintf(w, "points: %d\nclusters: %d\noutliers: %d (%.1f%%)\n",
		summary.Points, summary.Clusters, summary.Outliers, 100*summary.OutlierRatio)
	if summary.Clusters == 0 {
		return
	}
	sizes := summary.Sizes
	fmt.Fprintf(w, "cluster sizes: largest %d, median %d, smallest %d, mean %.1f\n",
		sizes[0], sizes[len(sizes)/2], sizes[len(sizes)-1], float64(summary.Points-summary.Outliers)/float64(summary.Clusters))
	var buckets []string
	for k, count := range summary.Buckets {
		if count > 0 {
			buckets = append(buckets, fmt.Sprintf("%d-%d: %d", 1<<k, 1<<(k+1)-1, count))
		}
	}
	fmt.Fprintf(w, "clusters by size: %s\n", strings.Join(buckets, ", "))
}
