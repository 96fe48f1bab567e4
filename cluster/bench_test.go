package cluster

import (
	"context"
	"testing"
)

// BenchmarkRun clusters Market-1501's training-set size (12,936 crops, 512-d) with the defaults.
func BenchmarkRun(b *testing.B) {
	sizes := make([]int, 750)
	for i := range sizes {
		sizes[i] = 4 + i%30
	}
	points := clustered(9, 512, sizes, 12936-sum(sizes), 0.9)
	b.ResetTimer()
	for b.Loop() {
		labels, graph, err := Run(context.Background(), points, Options{})
		if err != nil {
			b.Fatal(err)
		}
		edges := 0
		for _, row := range graph.Edges {
			edges += len(row)
		}
		summary := Summarize(labels)
		b.ReportMetric(float64(summary.Clusters), "clusters")
		b.ReportMetric(float64(edges)/float64(len(points)), "edges/point")
	}
}

func sum(values []int) int {
	total := 0
	for _, v := range values {
		total += v
	}
	return total
}
