package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/embedded"
	"github.com/reid-project/reid/index/milvus"
	"github.com/reid-project/reid/internal/lease"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/model"
	"github.com/reid-project/reid/stream"
	"github.com/reid-project/reid/torch"
)

// This file is the one place where configuration picks the backends: the broker (embedded or
// Kafka), the index (embedded or Milvus), the crop store and the model. Every subcommand opens
// them through these functions, so the code path is the same on one machine and at scale.

// openStream connects to the configured Kafka brokers. With none configured it starts the embedded
// broker on loopback (data under <data_dir>/broker) when startEmbedded is set — `reid run` — and
// otherwise connects to the embedded broker another reid process serves at stream.embedded_addr.
// It creates the topics. The returned close function stops a broker it started.
func openStream(ctx context.Context, options config.Options, startEmbedded bool) (stream.Connection, func(), error) {
	streamOptions := options.Stream
	if len(streamOptions.Brokers) == 0 && !startEmbedded {
		streamOptions.Brokers = []string{streamOptions.EmbeddedAddr}
	}
	cluster, err := stream.Open(ctx, streamOptions, options.DataDir, slog.Default())
	if err != nil {
		return stream.Connection{}, nil, err
	}
	return cluster.Conn, cluster.Close, nil
}

// openIndex opens the configured vector index backend.
func openIndex(ctx context.Context, options config.Options) (index.Index, error) {
	switch options.Index.Backend {
	case "milvus":
		backend, err := milvus.Open(ctx, milvus.FromConfig(options.Index.Milvus))
		if err != nil {
			return nil, err
		}
		return backend, nil
	default:
		backend, err := embedded.Open(filepath.Join(options.DataDir, "index"), embedded.OptionsFrom(options.Index.Embedded))
		if err != nil {
			return nil, err
		}
		return backend, nil
	}
}

// openCropStore opens the configured crop store.
func openCropStore(ctx context.Context, options config.Options) (cropStore, error) {
	switch options.CropStore.Backend {
	case "local":
		return cropstore.OpenLocal(filepath.Join(options.DataDir, "crops"))
	case "s3":
		s3 := options.CropStore.S3
		return cropstore.OpenS3(ctx, cropstore.S3Options{Endpoint: s3.Endpoint, Bucket: s3.Bucket, Region: s3.Region,
			AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, UseTLS: s3.UseTLS})
	default:
		return nil, fmt.Errorf("cropstore.backend %q: want local or s3", options.CropStore.Backend)
	}
}

// cropStore is the crop store every command works with: cropstore.Local or cropstore.S3.
type cropStore interface {
	Put(ctx context.Context, record cropstore.CropRecord) error
	Get(ctx context.Context, id string) (cropstore.CropRecord, error)
	Metadata(ctx context.Context, id string) (cropstore.CropRecord, error)
	Image(ctx context.Context, id string) ([]byte, error)
	Delete(ctx context.Context, id string) error
	Cameras(ctx context.Context) ([]string, error)
	Walk(ctx context.Context, filter cropstore.Filter, fn func(cropstore.CropRecord) error) error
	DeleteBefore(ctx context.Context, t time.Time) (int, error)
	DeleteCameraBefore(ctx context.Context, camera string, t time.Time) (int, error)
	// RecordErasure and Erased keep the record of erasures (cropstore/erasures.go).
	RecordErasure(ctx context.Context, erasure cropstore.Erasure) error
	Erased(ctx context.Context, record cropstore.CropRecord) (bool, error)
	Erasures(ctx context.Context) ([]cropstore.Erasure, error)
	// Location names the store in logs and messages: a directory or s3://bucket.
	Location() string
}

// loadedModel is a model version running on a torch device.
type loadedModel struct {
	device  *torch.Device
	network *torch.Model
	version model.Version
}

func (m *loadedModel) Close() {
	m.network.Close()
	m.device.Close()
}

// openModel loads a registered model version ("" = the active one, or embedder.model when set)
// onto the configured torch device.
func openModel(ctx context.Context, options config.Options, version string) (*loadedModel, error) {
	registry, err := openRegistry(options)
	if err != nil {
		return nil, err
	}
	if version == "" {
		version = options.Embedder.Model
	}
	entry, err := registry.Get(version)
	if err != nil {
		return nil, err
	}
	device, err := openDevice(options)
	if err != nil {
		return nil, err
	}
	network, err := model.Load(ctx, device, entry, options.Embedder.Flip)
	if err != nil {
		device.Close()
		return nil, err
	}
	slog.Info("model loaded", "version", entry.ID, "arch", entry.Arch, "device", device.Name(), "threads", device.Threads())
	return &loadedModel{device: device, network: network, version: entry}, nil
}

// detectorModelsDir is where the detector's model files are: detector.models_dir, or the shared
// assets' models/detector.
func detectorModelsDir(options config.Options) string {
	if options.Detector.ModelsDir != "" {
		return options.Detector.ModelsDir
	}
	return filepath.Join(options.SharedDir, "models", "detector")
}

// watchStore is where the lookup server keeps its watches: with the crop store in a bucket, a
// folder of the bucket, so that they outlive the machine and another lookup server can take them
// up (the watches of <data_dir>/watches are moved in the first time); else <data_dir>/watches.
func watchStore(options config.Options, store lookup.CropStore) (lookup.WatchStore, error) {
	local, folder, err := watchStores(options, store)
	if err != nil || folder == nil {
		return local, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	moved, err := lookup.MoveInWatches(ctx, local, folder)
	if err != nil {
		return nil, err
	}
	if moved > 0 {
		slog.Info("lookup: watches moved into the bucket", "files", moved, "from", local.Location(), "to", folder.Location())
	}
	return folder, nil
}

// leaseStore is where processes keep their leases (internal/lease): with the crop store in a
// bucket, which every machine of the site reaches, its folder @leases; else <data_dir>/leases,
// which processes on this machine share.
func leaseStore(options config.Options, store lookup.CropStore) (lease.Store, error) {
	if bucket, ok := store.(*cropstore.S3); ok {
		return bucket.Folder("@leases")
	}
	return lease.Dir(filepath.Join(options.DataDir, "leases")), nil
}

// watchStores are the data dir's watch directory and, with the crop store in a bucket, the
// bucket's folder for them (nil otherwise), which is then where the watches are.
func watchStores(options config.Options, store lookup.CropStore) (local lookup.WatchStore, folder *cropstore.Folder, err error) {
	if local, err = lookup.DirWatchStore(filepath.Join(options.DataDir, "watches")); err != nil {
		return nil, nil, err
	}
	if bucket, ok := store.(*cropstore.S3); ok {
		folder, err = bucket.Folder("@watches")
	}
	return local, folder, err
}
