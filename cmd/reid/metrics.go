package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reid-project/reid/archiver"
	"github.com/reid-project/reid/backup"
	"github.com/reid-project/reid/embedder"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/ingest"
	"github.com/reid-project/reid/retention"
	"github.com/reid-project/reid/stream"
	"github.com/reid-project/reid/trainer"
)

// pipelineMetrics serves the stages' own counters (their Stats snapshots) on /metrics, read at
// scrape time: nothing is counted twice and no stage depends on Prometheus. Any stage may be nil.
type pipelineMetrics struct {
	ingester  *ingest.Ingester
	producer  *stream.Producer
	embedder  *embedder.Embedder
	consumers map[string]*stream.Consumer // by consumer group
	archive   *archiver.Archiver
	vectors   index.Index
	models    *modelFollower
	// dataDir, when set, is the directory whose file system's free space is reported.
	dataDir string
	// retained counts what retention deleted; prune adds to it.
	retainedCrops, retainedVectors atomic.Int64
	// purgedRecords counts the crops topic's records deleted from the broker after erasures;
	// purging is set in the processes that purge, and purgePending while crops from before the
	// newest erasure are still readable there.
	purgedRecords         atomic.Int64
	purging, purgePending atomic.Bool
}

func metricDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	ingestFramesDesc     = metricDesc("reid_ingest_frames_total", "Frames processed after sampling, per camera.", "camera")
	ingestDecodedDesc    = metricDesc("reid_ingest_decoded_frames_total", "Frames read from the source, per camera.", "camera")
	ingestDetectionsDesc = metricDesc("reid_ingest_detections_total", "People detected, per camera.", "camera")
	ingestCropsDesc      = metricDesc("reid_ingest_crops_total", "Crops accepted by the sink (broker or crop store), per camera.", "camera")
	ingestReconnectsDesc = metricDesc("reid_ingest_reconnects_total", "Source reconnects, per camera.", "camera")
	ingestStationaryDesc = metricDesc("reid_ingest_stationary_skipped_total", "Crops not made because their track stood still (crops.stationary_interval), per camera.", "camera")
	ingestErasedDesc     = metricDesc("reid_ingest_erased_total", "Crops not written because their track was erased on request while still in view, per camera.", "camera")
	ingestLateDesc       = metricDesc("reid_ingest_late_frames_total", "Frames of a live stream passed over for a newer one because processing had not kept up, per camera.", "camera")
	producedDesc         = metricDesc("reid_producer_records_total", "Crop records the producer finished, by outcome: produced (acknowledged), dropped (buffer full, stream.drop_when_full), abandoned (unwritten at shutdown).", "outcome")
	producerErrorsDesc   = metricDesc("reid_producer_write_errors_total", "Failed writes to the broker (each retried).")
	producerBufferedDesc = metricDesc("reid_producer_buffered_records", "Crop records accepted but not yet acknowledged by the broker.")
	embedCropsDesc       = metricDesc("reid_embedder_crops_total", "Crops embedded and upserted (redeliveries included).")
	embedRejectedDesc    = metricDesc("reid_embedder_rejected_total", "Crops sent to the dead-letter topic because they could not be decoded.")
	embedErasedDesc      = metricDesc("reid_embedder_erased_total", "Crops not indexed because they were erased on request (POST /v1/erasures), or are of an erased track.")
	embedSecondsDesc     = metricDesc("reid_embedder_seconds_total", "Time the embedder spent, by step (decode: only what was not decoded ahead).", "step")
	embedAheadDesc       = metricDesc("reid_embedder_decoded_ahead_total", "Crops decoded while the model ran the batch before theirs.")
	embedModelDesc       = metricDesc("reid_embedder_model", "1 for the model version the embedder writes new crops with (it follows reid model promote).", "version")
	embedLatencyDesc     = metricDesc("reid_embedder_frame_to_searchable_seconds", "Frame time to upsert of the last crop of the last batch.")
	consumerHandledDesc  = metricDesc("reid_consumer_handled_total", "Records made durable and committed, per consumer group.", "group")
	consumerDLQDesc      = metricDesc("reid_consumer_dead_lettered_total", "Records sent to the dead-letter topic, per consumer group.", "group")
	consumerErrorsDesc   = metricDesc("reid_consumer_errors_total", "Failed handler calls and commits (retried), per consumer group.", "group", "kind")
	consumerLagDesc      = metricDesc("reid_consumer_lag_records", "Records in the topic not yet committed by the group.", "group")
	archivedDesc         = metricDesc("reid_archiver_crops_total", "Crops written to the crop store.")
	archiveErasedDesc    = metricDesc("reid_archiver_erased_total", "Crops not stored because they were erased on request (POST /v1/erasures), or are of an erased track.")
	galleryItemsDesc     = metricDesc("reid_index_items", "Vectors in each model version's gallery; active is 1 for the one lookups read.", "version", "active")
	backfillCropsDesc    = metricDesc("reid_model_switch_backfilled_total", "Stored crops embedded into a newly promoted model's gallery.")
	backfillPendingDesc  = metricDesc("reid_model_switch_pending", "1 while a promoted model's gallery is being backfilled, before lookups move to it.")
	dataDirFreeDesc      = metricDesc("reid_data_dir_free_bytes", "Space left on the data dir's file system (broker, crop store, index, models).")
	purgePendingDesc     = metricDesc("reid_erasure_broker_pending", "1 while crops from before the newest erasure are still readable in the broker, waiting for consumer groups to take them (reid check names them).")
	retentionDesc        = metricDesc("reid_retention_deleted_total", "What retention deleted, by kind (crops, vectors, and broker_records: the crops topic's records deleted from the broker after erasures).", "kind")
	backupSuccessDesc    = metricDesc("reid_backup_last_success_timestamp_seconds", "When the last reid backup of the data dir that succeeded finished (Unix time); 0 when none has.")
	backupFailedDesc     = metricDesc("reid_backup_last_run_failed", "1 when the data dir's last reid backup failed (reid check says why).")
)

func (m *pipelineMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{
		ingestFramesDesc, ingestDecodedDesc, ingestDetectionsDesc, ingestCropsDesc, ingestReconnectsDesc, ingestStationaryDesc,
		ingestLateDesc, ingestErasedDesc, producedDesc, producerErrorsDesc, producerBufferedDesc,
		embedCropsDesc, embedRejectedDesc, embedErasedDesc, embedSecondsDesc, embedAheadDesc, embedLatencyDesc, embedModelDesc,
		consumerHandledDesc, consumerDLQDesc, consumerErrorsDesc, consumerLagDesc, archivedDesc, archiveErasedDesc,
		galleryItemsDesc, backfillCropsDesc, backfillPendingDesc, retentionDesc, purgePendingDesc, dataDirFreeDesc,
		backupSuccessDesc, backupFailedDesc,
	} {
		ch <- desc
	}
}

func (m *pipelineMetrics) Collect(ch chan<- prometheus.Metric) {
	counter := func(desc *prometheus.Desc, value float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, value, labels...)
	}
	gauge := func(desc *prometheus.Desc, value float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, value, labels...)
	}
	if m.ingester != nil {
		for _, camera := range m.ingester.Stats().Cameras {
			counter(ingestFramesDesc, float64(camera.Frames), camera.Camera)
			counter(ingestDecodedDesc, float64(camera.Decoded), camera.Camera)
			counter(ingestDetectionsDesc, float64(camera.Detections), camera.Camera)
			counter(ingestCropsDesc, float64(camera.Crops), camera.Camera)
			counter(ingestReconnectsDesc, float64(camera.Reconnects), camera.Camera)
			counter(ingestStationaryDesc, float64(camera.Stationary), camera.Camera)
			counter(ingestLateDesc, float64(camera.Late), camera.Camera)
			counter(ingestErasedDesc, float64(camera.Erased), camera.Camera)
		}
	}
	if m.producer != nil {
		stats := m.producer.Stats()
		counter(producedDesc, float64(stats.Produced), "produced")
		counter(producedDesc, float64(stats.Dropped), "dropped")
		counter(producedDesc, float64(stats.Abandoned), "abandoned")
		// Stats.Errors also counts abandoned records; this is the failed writes alone.
		counter(producerErrorsDesc, float64(stats.Errors-stats.Abandoned))
		gauge(producerBufferedDesc, float64(stats.Buffered))
	}
	if m.embedder != nil {
		stats := m.embedder.Stats()
		counter(embedCropsDesc, float64(stats.Embedded))
		counter(embedRejectedDesc, float64(stats.Rejected))
		counter(embedErasedDesc, float64(stats.Erased))
		counter(embedAheadDesc, float64(stats.DecodedAhead))
		counter(embedSecondsDesc, stats.DecodeTime.Seconds(), "decode")
		counter(embedSecondsDesc, stats.ModelTime.Seconds(), "model")
		counter(embedSecondsDesc, stats.UpsertTime.Seconds(), "upsert")
		gauge(embedLatencyDesc, stats.LastLatency.Seconds())
		gauge(embedModelDesc, 1, m.embedder.Version())
	}
	// The lag and gallery sizes ask the broker and the index: bounded, and left out on error.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for group, consumer := range m.consumers {
		stats := consumer.Stats()
		counter(consumerHandledDesc, float64(stats.Handled), group)
		counter(consumerDLQDesc, float64(stats.DeadLettered), group)
		counter(consumerErrorsDesc, float64(stats.HandlerErrors), group, "handler")
		counter(consumerErrorsDesc, float64(stats.CommitErrors), group, "commit")
		if lag, err := consumer.Lag(ctx); err == nil {
			gauge(consumerLagDesc, float64(lag), group)
		}
	}
	if m.archive != nil {
		counter(archivedDesc, float64(m.archive.Archived()))
		counter(archiveErasedDesc, float64(m.archive.Erased()))
	}
	if m.vectors != nil {
		if versions, err := m.vectors.Versions(ctx); err == nil {
			for _, version := range versions {
				active := "0"
				if version.Active {
					active = "1"
				}
				gauge(galleryItemsDesc, float64(version.Count), version.Name, active)
			}
		}
	}
	if m.models != nil {
		counter(backfillCropsDesc, float64(m.models.backfilled.Load()))
		pending := 0.0
		if m.models.pending() {
			pending = 1
		}
		gauge(backfillPendingDesc, pending)
	}
	if m.dataDir != "" {
		if free, err := freeBytes(m.dataDir); err == nil {
			gauge(dataDirFreeDesc, float64(free))
		}
		// reid backup, run from a timer, leaves its outcome in the data dir for this process to
		// serve, so that the usual scrape can alert on backups that stopped or fail.
		if status, found, err := backup.ReadStatus(m.dataDir); err == nil {
			success, failed := 0.0, 0.0
			if found && !status.LastSuccess.IsZero() {
				success = float64(status.LastSuccess.UnixMilli()) / 1000
			}
			if found && status.Error != "" {
				failed = 1
			}
			gauge(backupSuccessDesc, success)
			gauge(backupFailedDesc, failed)
		}
	}
	counter(retentionDesc, float64(m.retainedCrops.Load()), "crops")
	counter(retentionDesc, float64(m.retainedVectors.Load()), "vectors")
	counter(retentionDesc, float64(m.purgedRecords.Load()), "broker_records")
	if m.purging.Load() {
		pending := 0.0
		if m.purgePending.Load() {
			pending = 1
		}
		gauge(purgePendingDesc, pending)
	}
}

// purged counts a purge of the broker after an erasure.
func (m *pipelineMetrics) purged(result stream.PurgeResult) {
	m.purging.Store(true)
	m.purgedRecords.Add(result.Deleted)
	m.purgePending.Store(!result.Complete)
}

// pruned counts a retention prune.
func (m *pipelineMetrics) pruned(result retention.Result) {
	m.retainedCrops.Add(int64(result.Crops))
	m.retainedVectors.Add(int64(result.Vectors))
}

// trainingMetrics serves a `reid train` run's progress: the last epoch's report, for a dashboard
// of a run that takes hours on a GPU.
type trainingMetrics struct {
	epochs int // planned
	mu     sync.Mutex
	last   *trainer.EpochReport
}

var (
	trainEpochDesc    = metricDesc("reid_train_epoch", "The last finished epoch (counting those resumed from a checkpoint), and the epochs planned.", "kind")
	trainClustersDesc = metricDesc("reid_train_clusters", "The last epoch's pseudo-identities: clusters, those spanning cameras, and outlier crops.", "kind")
	trainLossDesc     = metricDesc("reid_train_loss", "The last epoch's mean contrastive loss.")
	trainLRDesc       = metricDesc("reid_train_learning_rate", "The last epoch's learning rate.")
	trainSecondsDesc  = metricDesc("reid_train_epoch_seconds", "Time the last epoch spent, by step (features, cluster, train).", "step")
)

func (m *trainingMetrics) epochDone(report trainer.EpochReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = &report
}

func (m *trainingMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{trainEpochDesc, trainClustersDesc, trainLossDesc, trainLRDesc, trainSecondsDesc} {
		ch <- desc
	}
}

func (m *trainingMetrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(desc *prometheus.Desc, value float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, value, labels...)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	gauge(trainEpochDesc, float64(m.epochs), "planned")
	if m.last == nil {
		gauge(trainEpochDesc, 0, "done")
		return
	}
	report := m.last
	gauge(trainEpochDesc, float64(report.Epoch), "done")
	gauge(trainClustersDesc, float64(report.Clusters), "clusters")
	gauge(trainClustersDesc, float64(report.CrossCamera), "cross_camera")
	gauge(trainClustersDesc, float64(report.Outliers), "outliers")
	gauge(trainLossDesc, report.Loss)
	gauge(trainLRDesc, report.LR)
	gauge(trainSecondsDesc, report.FeatureSeconds, "features")
	gauge(trainSecondsDesc, report.ClusterSeconds, "cluster")
	gauge(trainSecondsDesc, report.TrainSeconds, "train")
}
