package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/index"
)

// BenchmarkSnapshotWritePause fills a gallery of 200,000 x 512 (the gallery of a busy site's day;
// REIDBENCH_SNAPSHOT_ITEMS sets another size, 100,000 in hnsw mode), then writes a snapshot while a writer upserts batches of 32 crops (the embedder's batch) as fast
// as it can, and reports the snapshot's duration and the writer's longest and median upsert
// during it: how long the pipeline stalls while a snapshot is written.
func BenchmarkSnapshotWritePause(b *testing.B) {
	const dim, batch = 512, 32
	for _, mode := range []string{"exact", "hnsw"} {
		b.Run(mode, func(b *testing.B) {
			items := 200_000
			if mode == "hnsw" {
				items = 100_000 // the graph takes a minute or two to build
			}
			if n, err := strconv.Atoi(os.Getenv("REIDBENCH_SNAPSHOT_ITEMS")); err == nil && n > 0 {
				items = n
			}
			ctx := context.Background()
			ix, err := Open(b.TempDir(), Options{Mode: mode, SnapshotBytes: 1 << 40, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer ix.Close()
			if err := ix.CreateVersion(ctx, "v1", dim); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			item := func(i int) index.Item {
				vector := make([]float32, dim)
				for j := range vector {
					vector[j] = float32(rng.NormFloat64())
				}
				return index.Item{ID: fmt.Sprintf("crop-%d", i), Vector: normalised(vector),
					Metadata: index.Metadata{Camera: "gate", Time: time.Unix(int64(i), 0), Track: int64(i / 10)}}
			}
			for start := 0; start < items; start += 1000 {
				chunk := make([]index.Item, 0, 1000)
				for i := start; i < start+1000; i++ {
					chunk = append(chunk, item(i))
				}
				if err := ix.Upsert(ctx, "v1", chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				var latencies []time.Duration
				var wg sync.WaitGroup
				stop := make(chan struct{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := items
					for {
						select {
						case <-stop:
							return
						default:
						}
						chunk := make([]index.Item, batch)
						for i := range chunk {
							chunk[i] = item(next)
							next++
						}
						began := time.Now()
						if err := ix.Upsert(ctx, "v1", chunk); err != nil {
							b.Error(err)
							return
						}
						latencies = append(latencies, time.Since(began))
					}
				}()
				time.Sleep(50 * time.Millisecond)
				began := time.Now()
				if err := ix.Snapshot(ctx); err != nil {
					b.Fatal(err)
				}
				took := time.Since(began)
				close(stop)
				wg.Wait()
				slices.Sort(latencies)
				b.ReportMetric(took.Seconds(), "snapshot-s")
				b.ReportMetric(float64(latencies[len(latencies)-1].Milliseconds()), "max-upsert-ms")
				b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-upsert-ms")
				b.ReportMetric(float64(len(latencies)), "upserts")
			}
		})
	}
}
