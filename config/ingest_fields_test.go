package config

import (
	"strings"
	"testing"
	"time"
)

// The ingest, detector, tracker, crops and trainer settings: each bad value is rejected naming its key.
func TestIngestFieldValidation(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(*Options)
	}{
		{"ingest.sample_fps", func(o *Options) { o.Ingest.SampleFPS = -1 }},
		{"ingest.timestamps", func(o *Options) { o.Ingest.Timestamps = "pts" }},
		{"ingest.reconnect_initial", func(o *Options) { o.Ingest.ReconnectInitial = 0 }},
		{"ingest.reconnect_max", func(o *Options) { o.Ingest.ReconnectMax = o.Ingest.ReconnectInitial / 2 }},
		{"ingest.max_reconnects", func(o *Options) { o.Ingest.MaxReconnects = -1 }},
		{"cameras[0].sample_fps", func(o *Options) { o.Cameras = []Camera{{ID: "c", Source: "v.avi", SampleFPS: -2}} }},
		{"cameras[0].start_time", func(o *Options) { o.Cameras = []Camera{{ID: "c", Source: "v.avi", StartTime: "yesterday"}} }},
		{"cameras[0].frame_interval", func(o *Options) { o.Cameras = []Camera{{ID: "c", Source: "d", FrameInterval: -time.Second}} }},
		{"detector.model", func(o *Options) { o.Detector.Model = "hog" }},
		{"detector.input_size", func(o *Options) { o.Detector.InputSize = 300 }},
		{"detector.confidence", func(o *Options) { o.Detector.Confidence = 1.5 }},
		{"detector.nms", func(o *Options) { o.Detector.NMS = -0.1 }},
		{"detector.min_width", func(o *Options) { o.Detector.MinWidth = -1 }},
		{"detector.min_height", func(o *Options) { o.Detector.MinHeight = -1 }},
		{"detector.max_aspect", func(o *Options) { o.Detector.MinAspect, o.Detector.MaxAspect = 3, 2 }},
		{"detector.threads", func(o *Options) { o.Detector.Threads = -1 }},
		{"tracker.iou", func(o *Options) { o.Tracker.IoU = 2 }},
		{"tracker.max_age", func(o *Options) { o.Tracker.MaxAge = 0 }},
		{"tracker.min_hits", func(o *Options) { o.Tracker.MinHits = 0 }},
		{"crops.width", func(o *Options) { o.Crops.Width = 8 }},
		{"crops.height", func(o *Options) { o.Crops.Height = 4096 }},
		{"crops.jpeg_quality", func(o *Options) { o.Crops.JPEGQuality = 0 }},
		{"crops.min_interval", func(o *Options) { o.Crops.MinInterval = -time.Millisecond }},
		{"crops.stationary_interval", func(o *Options) { o.Crops.StationaryInterval = -time.Second }},
		{"crops.padding", func(o *Options) { o.Crops.Padding = 1.5 }},
		{"trainer.epochs", func(o *Options) { o.Trainer.Epochs = 0 }},
		{"trainer.iters_per_epoch", func(o *Options) { o.Trainer.ItersPerEpoch = -3 }},
		{"trainer.batch_size", func(o *Options) { o.Trainer.BatchSize = 100 }},
		{"trainer.batch_size", func(o *Options) { o.Trainer.Instances = 1 }},
		{"trainer.lr", func(o *Options) { o.Trainer.LR = 0 }},
		{"trainer.lr_step", func(o *Options) { o.Trainer.LRStep = 0 }},
		{"trainer.eps", func(o *Options) { o.Trainer.Eps = 1 }},
		{"trainer.min_samples", func(o *Options) { o.Trainer.MinSamples = 0 }},
		{"trainer.max_crops", func(o *Options) { o.Trainer.MaxCrops = -1 }},
		{"trainer.inter_camera", func(o *Options) { o.Trainer.InterCamera = -0.5 }},
		{"trainer.hard_negatives", func(o *Options) { o.Trainer.HardNegatives = 0 }},
	}
	for _, test := range tests {
		options := Default()
		test.mutate(&options)
		err := options.Validate()
		if err == nil || !strings.Contains(err.Error(), test.key) {
			t.Errorf("%s: error %v does not name the key", test.key, err)
		}
	}

	options := Default()
	options.Detector.Model = "yolox-nano"
	options.Detector.InputSize = 640
	options.Ingest.Timestamps = "wallclock"
	options.Cameras = []Camera{{ID: "cam-1", Source: "/dev/video0", SampleFPS: 5, StartTime: "2024-01-31T12:00:00Z"}}
	if err := options.Validate(); err != nil {
		t.Errorf("valid ingest settings rejected: %v", err)
	}
}
