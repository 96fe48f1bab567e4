package eval

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkMarketSize times distances and metrics at Market-1501's test size (3,368 queries x
// 15,913 gallery, 512-d features like OSNet's).
func BenchmarkMarketSize(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	queryFeatures, query := randomSet(rng, 3368, 512, 750, 6, false, 0.35)
	galleryFeatures, gallery := randomSet(rng, 15913, 512, 750, 6, true, 0.35)
	ctx := context.Background()
	distances, err := Distances(ctx, queryFeatures, galleryFeatures)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("distances", func(b *testing.B) {
		for b.Loop() {
			if _, err := Distances(ctx, queryFeatures, galleryFeatures); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(query))*float64(b.N)/b.Elapsed().Seconds(), "queries/s")
	})
	b.Run("metrics", func(b *testing.B) {
		for b.Loop() {
			if _, err := Evaluate(ctx, distances, query, gallery); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(query))*float64(b.N)/b.Elapsed().Seconds(), "queries/s")
	})
}

// BenchmarkRerank times k-reciprocal re-ranking at 1,000 queries x 5,000 gallery.
func BenchmarkRerank(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	queryFeatures, _ := randomSet(rng, 1000, 512, 300, 6, false, 0.35)
	galleryFeatures, _ := randomSet(rng, 5000, 512, 300, 6, false, 0.35)
	for b.Loop() {
		if _, err := Rerank(context.Background(), queryFeatures, galleryFeatures, RerankOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
