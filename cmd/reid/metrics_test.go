package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/embedder"
	"github.com/reid-project/reid/index/embedded"
	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/model"
	"github.com/reid-project/reid/retention"
	"github.com/reid-project/reid/stream"
	"github.com/reid-project/reid/trainer"
)

// greyModel embeds every crop as the same unit vector.
type greyModel struct{}

func (greyModel) Dim() int { return 2 }
func (greyModel) Embed(_ context.Context, images []image.Image) ([][]float32, error) {
	out := make([][]float32, len(images))
	for i := range out {
		out[i] = []float32{1, 0}
	}
	return out, nil
}

// greyJPEG is a small, valid crop image.
func greyJPEG(t *testing.T) []byte {
	t.Helper()
	var picture bytes.Buffer
	frame := image.NewGray(image.Rect(0, 0, 16, 32))
	for i := range frame.Pix {
		frame.Pix[i] = color.Gray{Y: 90}.Y
	}
	if err := jpeg.Encode(&picture, frame, nil); err != nil {
		t.Fatal(err)
	}
	return picture.Bytes()
}

// TestProducerMetrics checks the producer's counters on /metrics with a broker that is down:
// what it holds shows as buffered, the failed writes as errors, and, with drop_when_full, what
// did not fit as dropped.
func TestProducerMetrics(t *testing.T) {
	producer, err := stream.NewProducer(stream.Connection{Brokers: []string{freeAddr(t)}}, stream.ProducerOptions{
		Topic: "crops", Buffer: 2, BatchSize: 1, Lanes: 1, DropWhenFull: true, MaxAttempts: 1, RetryBackoffMax: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		producer.Close(ctx) // abandons what it holds: the broker never came up
	}()
	picture := greyJPEG(t)
	const put = 10
	for i := range put {
		at := time.Date(2026, 11, 27, 8, 0, i, 0, time.UTC)
		record := cropstore.CropRecord{ID: cropstore.NewID("gate", at, int64(i), 0), Camera: "gate", Time: at, JPEG: picture}
		if err := producer.Put(context.Background(), record); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for producer.Stats().Errors == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(&pipelineMetrics{producer: producer})
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, family := range families {
		for _, metric := range family.GetMetric() {
			name := family.GetName()
			for _, label := range metric.GetLabel() {
				name += "/" + label.GetValue()
			}
			values[name] = metric.GetCounter().GetValue() + metric.GetGauge().GetValue()
		}
	}
	// One record is in the lane's failing write and up to two wait in the buffer (two, unless the
	// lane took its record after the last Put): the rest were dropped.
	held := values["reid_producer_buffered_records"]
	if held < 2 || held > 3 || values["reid_producer_records_total/dropped"] != put-held || values["reid_producer_records_total/produced"] != 0 {
		t.Errorf("producer metrics %v: want 2-3 buffered, the rest of %d dropped, none produced", values, put)
	}
	if values["reid_producer_write_errors_total"] < 1 || values["reid_producer_records_total/abandoned"] != 0 {
		t.Errorf("producer metrics %v: want failed writes counted and nothing abandoned yet", values)
	}
}

// TestPipelineMetrics checks that /metrics reports the stages' own counters: crops embedded and
// rejected, gallery sizes with the active one marked, a pending model switch, retention.
func TestPipelineMetrics(t *testing.T) {
	ctx := context.Background()
	vectors, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	if err := vectors.CreateVersion(ctx, "v1", 2); err != nil {
		t.Fatal(err)
	}
	if err := vectors.Activate(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	embed, err := embedder.New(ctx, embedder.Options{Model: greyModel{}, Version: "v2", Index: vectors})
	if err != nil {
		t.Fatal(err)
	}
	picture := greyJPEG(t)
	var batch []stream.Message
	for i := range 5 {
		at := time.Date(2026, 11, 27, 8, 0, i, 0, time.UTC)
		image := picture
		if i == 4 {
			image = image[:20] // undecodable: rejected to the dead-letter topic
		}
		batch = append(batch, stream.Message{Record: cropstore.CropRecord{ID: cropstore.NewID("gate", at, int64(i), 0), Camera: "gate", Time: at, JPEG: image}})
	}
	if err := embed.Handle(ctx, batch); err == nil {
		t.Fatal("the broken crop was not rejected")
	}
	// Ten frames of a file through the real detector: each decoded and processed, none late.
	options := config.Default()
	options.SharedDir = testassets.SharedDir()
	ingester, err := newIngester(options, discardSink{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := ingester.Run(ctx, []config.Camera{{ID: "gate", Source: testassets.Path(t, "video/vtest.avi")}}); err != nil {
		t.Fatal(err)
	}
	models := &modelFollower{embedding: &loadedModel{version: model.Version{Metadata: model.Metadata{ID: "v2"}}}, servingVersion: "v1"}
	models.backfilled.Store(7)
	metrics := &pipelineMetrics{ingester: ingester, embedder: embed, vectors: vectors, models: models, dataDir: t.TempDir()}
	metrics.pruned(retention.Result{Crops: 3, Vectors: 6})
	metrics.purged(stream.PurgeResult{Deleted: 40, Behind: []string{"reid-embedder"}})
	metrics.purged(stream.PurgeResult{Deleted: 2, Complete: true})
	registry := prometheus.NewRegistry()
	registry.MustRegister(metrics)

	want := `
# HELP reid_ingest_frames_total Frames processed after sampling, per camera.
# TYPE reid_ingest_frames_total counter
reid_ingest_frames_total{camera="gate"} 10
# HELP reid_ingest_decoded_frames_total Frames read from the source, per camera.
# TYPE reid_ingest_decoded_frames_total counter
reid_ingest_decoded_frames_total{camera="gate"} 10
# HELP reid_ingest_late_frames_total Frames of a live stream passed over for a newer one because processing had not kept up, per camera.
# TYPE reid_ingest_late_frames_total counter
reid_ingest_late_frames_total{camera="gate"} 0
# HELP reid_embedder_decoded_ahead_total Crops decoded while the model ran the batch before theirs.
# TYPE reid_embedder_decoded_ahead_total counter
reid_embedder_decoded_ahead_total 0
# HELP reid_embedder_crops_total Crops embedded and upserted (redeliveries included).
# TYPE reid_embedder_crops_total counter
reid_embedder_crops_total 4
# HELP reid_embedder_rejected_total Crops sent to the dead-letter topic because they could not be decoded.
# TYPE reid_embedder_rejected_total counter
reid_embedder_rejected_total 1
# HELP reid_embedder_model 1 for the model version the embedder writes new crops with (it follows reid model promote).
# TYPE reid_embedder_model gauge
reid_embedder_model{version="v2"} 1
# HELP reid_index_items Vectors in each model version's gallery; active is 1 for the one lookups read.
# TYPE reid_index_items gauge
reid_index_items{active="1",version="v1"} 0
reid_index_items{active="0",version="v2"} 4
# HELP reid_model_switch_backfilled_total Stored crops embedded into a newly promoted model's gallery.
# TYPE reid_model_switch_backfilled_total counter
reid_model_switch_backfilled_total 7
# HELP reid_model_switch_pending 1 while a promoted model's gallery is being backfilled, before lookups move to it.
# TYPE reid_model_switch_pending gauge
reid_model_switch_pending 1
# HELP reid_erasure_broker_pending 1 while crops from before the newest erasure are still readable in the broker, waiting for consumer groups to take them (reid check names them).
# TYPE reid_erasure_broker_pending gauge
reid_erasure_broker_pending 0
# HELP reid_retention_deleted_total What retention deleted, by kind (crops, vectors, and broker_records: the crops topic's records deleted from the broker after erasures).
# TYPE reid_retention_deleted_total counter
reid_retention_deleted_total{kind="broker_records"} 42
reid_retention_deleted_total{kind="crops"} 3
reid_retention_deleted_total{kind="vectors"} 6
`
	names := []string{"reid_ingest_frames_total", "reid_ingest_decoded_frames_total", "reid_ingest_late_frames_total", "reid_embedder_crops_total", "reid_embedder_decoded_ahead_total", "reid_embedder_rejected_total", "reid_embedder_model", "reid_index_items",
		"reid_model_switch_backfilled_total", "reid_model_switch_pending", "reid_retention_deleted_total", "reid_erasure_broker_pending"}
	if err := testutil.GatherAndCompare(registry, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	models.servingVersion = "v2"
	after := `
# HELP reid_model_switch_pending 1 while a promoted model's gallery is being backfilled, before lookups move to it.
# TYPE reid_model_switch_pending gauge
reid_model_switch_pending 0
`
	if err := testutil.GatherAndCompare(registry, strings.NewReader(after), "reid_model_switch_pending"); err != nil {
		t.Errorf("after the switch: %v", err)
	}
	if count, _ := vectors.Count(ctx, "v2"); count != 4 {
		t.Fatalf("v2 holds %d vectors", count)
	}
	// The data dir's free space is the file system's, read at each scrape.
	free, err := freeBytes(metrics.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	reported := -1.0
	for _, family := range families {
		if family.GetName() == "reid_data_dir_free_bytes" {
			reported = family.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if reported <= 0 || math.Abs(reported-float64(free)) > 0.05*float64(free) {
		t.Errorf("reid_data_dir_free_bytes = %v, statfs says %d", reported, free)
	}
}

// TestTrainingMetrics checks what `reid train` serves on ops.addr before and after an epoch.
func TestTrainingMetrics(t *testing.T) {
	progress := &trainingMetrics{epochs: 16}
	before := `
# HELP reid_train_epoch The last finished epoch (counting those resumed from a checkpoint), and the epochs planned.
# TYPE reid_train_epoch gauge
reid_train_epoch{kind="done"} 0
reid_train_epoch{kind="planned"} 16
`
	if err := testutil.CollectAndCompare(progress, strings.NewReader(before)); err != nil {
		t.Fatal(err)
	}
	progress.epochDone(trainer.EpochReport{Epoch: 3, Clusters: 40, CrossCamera: 12, Outliers: 55, Loss: 2.5, LR: 3.5e-4,
		FeatureSeconds: 10, ClusterSeconds: 2, TrainSeconds: 30})
	after := `
# HELP reid_train_clusters The last epoch's pseudo-identities: clusters, those spanning cameras, and outlier crops.
# TYPE reid_train_clusters gauge
reid_train_clusters{kind="clusters"} 40
reid_train_clusters{kind="cross_camera"} 12
reid_train_clusters{kind="outliers"} 55
# HELP reid_train_epoch The last finished epoch (counting those resumed from a checkpoint), and the epochs planned.
# TYPE reid_train_epoch gauge
reid_train_epoch{kind="done"} 3
reid_train_epoch{kind="planned"} 16
# HELP reid_train_loss The last epoch's mean contrastive loss.
# TYPE reid_train_loss gauge
reid_train_loss 2.5
# HELP reid_train_epoch_seconds Time the last epoch spent, by step (features, cluster, train).
# TYPE reid_train_epoch_seconds gauge
reid_train_epoch_seconds{step="cluster"} 2
reid_train_epoch_seconds{step="features"} 10
reid_train_epoch_seconds{step="train"} 30
`
	if err := testutil.CollectAndCompare(progress, strings.NewReader(after), "reid_train_clusters", "reid_train_epoch", "reid_train_loss", "reid_train_epoch_seconds"); err != nil {
		t.Fatal(err)
	}
}
