package main

import (
	"context"
	"image"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/jpegturbo"
	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/stream"
)

// BenchmarkPipeline measures, on vtest.avi through the embedded broker, embedder and embedded
// index with the shared OSNet x0.25:
//   - crops/s end to end (ingest start to the last crop searchable);
//   - p50/p99 latency from frame (wall-clock stamped at decode) to searchable;
//   - the embedder stage's throughput on a topic already full of crops, against the raw model
//     throughput on the same crops decoded in memory at the same batch size: the overhead of
//     Kafka, JPEG decoding and index upserts (the raw model timed before and after the stage).
//
// Run with: go test -run '^$' -bench Pipeline -benchtime 1x ./cmd/reid (scripts/bench.sh does).
func BenchmarkPipeline(b *testing.B) {
	for range b.N {
		benchmarkPipelineOnce(b)
	}
}

func benchmarkPipelineOnce(b *testing.B) {
	options := loadOptions(b, pipelineFixture(b))
	options.Ingest.Timestamps = "wallclock"
	// The file decodes several times faster than real time, so a wall-clock rate limit per track
	// would keep far fewer crops than a live camera gives; keep every tracked detection instead.
	options.Crops.MinInterval = 0
	ctx := context.Background()
	conn, closeBroker, err := openStream(ctx, options, true)
	if err != nil {
		b.Fatal(err)
	}
	defer closeBroker()
	vectors, err := openIndex(ctx, options)
	if err != nil {
		b.Fatal(err)
	}
	defer vectors.Close()
	loaded, err := openModel(ctx, options, "")
	if err != nil {
		b.Fatal(err)
	}
	defer loaded.Close()
	stage, err := newEmbedStage(ctx, options, conn, loaded, vectors, nil)
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var latencies []time.Duration
	stage.embedder.ObserveLatency(func(batch []time.Duration) {
		mu.Lock()
		latencies = append(latencies, batch...)
		mu.Unlock()
	})
	producer, err := stream.NewProducer(conn, stream.ProducerOptionsFrom(options.Stream))
	if err != nil {
		b.Fatal(err)
	}
	recorder := &jpegRecorder{next: producer}
	ingester, err := newIngester(options, recorder, 0)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- stage.consumer.Run(runCtx) }()

	b.ResetTimer()
	started := time.Now()
	camera := config.Camera{ID: "street", Source: testassets.Path(b, "video/vtest.avi")}
	if err := ingester.Run(ctx, []config.Camera{camera}); err != nil {
		b.Fatal(err)
	}
	if err := producer.Close(ctx); err != nil {
		b.Fatal(err)
	}
	crops := producer.Stats().Produced
	waitCaughtUp(ctx, stage.consumer)
	elapsed := time.Since(started)
	b.StopTimer()
	stop()
	<-consumerDone

	mu.Lock()
	slices.Sort(latencies)
	p50, p99 := percentile(latencies, 0.50), percentile(latencies, 0.99)
	mu.Unlock()
	b.ReportMetric(float64(crops)/elapsed.Seconds(), "crops/s")
	b.ReportMetric(float64(ingester.Stats().Frames)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")

	// Embedder overhead: the stage alone over the full topic, then the raw model on the same crops.
	// The raw model runs just before and just after the stage and the two rates are averaged: on
	// a shared machine the model's own speed drifts by 10% from one 15 s window to the next, as
	// much as the overhead being measured.
	images := recorder.images(b)
	rawBefore := rawModelRate(b, loaded, images, options.Embedder.BatchSize)
	stageRate := embedStageRate(b, options, conn, loaded, vectors)
	rawAfter := rawModelRate(b, loaded, images, options.Embedder.BatchSize)
	rawRate := (rawBefore + rawAfter) / 2
	b.Logf("raw model %.1f img/s before the stage, %.1f after", rawBefore, rawAfter)
	b.ReportMetric(stageRate, "stage-img/s")
	b.ReportMetric(rawRate, "model-img/s")
	b.ReportMetric(100*(rawRate/stageRate-1), "overhead-%")
	b.Logf("%d crops from %d frames in %.1fs: %.1f crops/s, frame-to-searchable p50 %v p99 %v; embedder stage %.1f img/s vs raw model %.1f img/s (overhead %.1f%%)",
		crops, ingester.Stats().Frames, elapsed.Seconds(), float64(crops)/elapsed.Seconds(), p50, p99, stageRate, rawRate, 100*(rawRate/stageRate-1))
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// embedStageRate times a fresh consumer group embedding every record already in the topic.
func embedStageRate(b *testing.B, options config.Options, conn stream.Connection, loaded *loadedModel, vectors index.Index) float64 {
	ctx := context.Background()
	// The same wiring as reid run's, in a group of its own.
	options.Stream.EmbedGroup = "bench-embedder"
	embedStage, err := newEmbedStage(ctx, options, conn, loaded, vectors, nil)
	if err != nil {
		b.Fatal(err)
	}
	stage, consumer := embedStage.embedder, embedStage.consumer
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	// The clock starts at the first handled batch, so group join and rebalance are not counted.
	go func() { done <- consumer.Run(runCtx) }()
	for stage.Stats().Batches == 0 {
		time.Sleep(time.Millisecond)
	}
	started, first := time.Now(), stage.Stats().Embedded
	waitCaughtUp(ctx, consumer)
	elapsed := time.Since(started)
	stats := stage.Stats()
	embedded := stats.Embedded - first
	stop()
	<-done
	b.Logf("embedder stage: %d crops in %v: decode %v, model %v, upsert %v (sums over all batches); %d crops decoded ahead",
		stats.Embedded, elapsed, stats.DecodeTime, stats.ModelTime, stats.UpsertTime, stats.DecodedAhead)
	return float64(embedded) / elapsed.Seconds()
}

func rawModelRate(b *testing.B, loaded *loadedModel, images []image.Image, batchSize int) float64 {
	ctx := context.Background()
	started := time.Now()
	for start := 0; start < len(images); start += batchSize {
		if _, err := loaded.network.Embed(ctx, images[start:min(start+batchSize, len(images))]); err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(images)) / time.Since(started).Seconds()
}

// jpegRecorder keeps the JPEG of every crop it passes on.
type jpegRecorder struct {
	next interface {
		Put(context.Context, cropstore.CropRecord) error
	}
	mu    sync.Mutex
	jpegs [][]byte
}

func (r *jpegRecorder) Put(ctx context.Context, record cropstore.CropRecord) error {
	if err := r.next.Put(ctx, record); err != nil {
		return err
	}
	r.mu.Lock()
	r.jpegs = append(r.jpegs, record.JPEG)
	r.mu.Unlock()
	return nil
}

func (r *jpegRecorder) images(b *testing.B) []image.Image {
	images := make([]image.Image, len(r.jpegs))
	for i, data := range r.jpegs {
		picture, err := jpegturbo.Decode(data) // the embedder's decoder, so the model gets the same input
		if err != nil {
			b.Fatal(err)
		}
		images[i] = picture
	}
	return images
}
