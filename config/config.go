// Package config holds reid's one Options struct and loads it the same way for every subcommand:
// defaults, then the config file, then REID_* environment variables, then command-line flags.
//
// Libraries never read flags or the environment; cmd/reid loads Options here and passes the parts
// each stage needs.
package config

import (
	"errors"
	"fmt"
	"image"
	"math"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Options is the whole effective configuration. The mapstructure tags are the keys used in the
// config file (YAML), in REID_* variables (upper case, "." -> "_") and in error messages.
// A field tagged secret:"true" is masked when the configuration is printed.
type Options struct {
	// DataDir holds the crop store, index, broker data and model registry. Default "./data".
	DataDir string `mapstructure:"data_dir" yaml:"data_dir"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `mapstructure:"log_level" yaml:"log_level"`
	// SharedDir is where the shared assets (detector models, demo videos) live. Default "../shared".
	SharedDir string `mapstructure:"shared_dir" yaml:"shared_dir"`

	Cameras   []Camera  `mapstructure:"cameras" yaml:"cameras"`
	Ingest    Ingest    `mapstructure:"ingest" yaml:"ingest"`
	Detector  Detector  `mapstructure:"detector" yaml:"detector"`
	Tracker   Tracker   `mapstructure:"tracker" yaml:"tracker"`
	Crops     Crops     `mapstructure:"crops" yaml:"crops"`
	CropStore CropStore `mapstructure:"cropstore" yaml:"cropstore"`
	Stream    Stream    `mapstructure:"stream" yaml:"stream"`
	Torch     Torch     `mapstructure:"torch" yaml:"torch"`
	Embedder  Embedder  `mapstructure:"embedder" yaml:"embedder"`
	Index     Index     `mapstructure:"index" yaml:"index"`
	Lookup    Lookup    `mapstructure:"lookup" yaml:"lookup"`
	Ops       Ops       `mapstructure:"ops" yaml:"ops"`
	Retention Retention `mapstructure:"retention" yaml:"retention"`
	Trainer   Trainer   `mapstructure:"trainer" yaml:"trainer"`
}

// Camera is one video source with its id.
type Camera struct {
	// ID names the camera in every record; letters, digits, '-', '_' and '.' only.
	ID string `mapstructure:"id" yaml:"id"`
	// Source is a file path, an rtsp:// or http(s):// URL, a V4L device ("/dev/video0" or "0"),
	// or a directory of still frames. A URL's credentials (rtsp://user:password@host/...) are
	// masked when the configuration is printed or logged.
	Source string `mapstructure:"source" yaml:"source" secret:"url-credentials"`
	// SampleFPS overrides ingest.sample_fps for this camera when > 0.
	SampleFPS float64 `mapstructure:"sample_fps" yaml:"sample_fps"`
	// StartTime is the wall-clock time of a file's first frame (RFC 3339). Empty: the file's
	// modification time minus its duration for files, now for live sources.
	StartTime string `mapstructure:"start_time" yaml:"start_time"`
	// FrameInterval is the time between still frames of a directory source whose file names carry
	// no timestamp. Default 100ms.
	FrameInterval time.Duration `mapstructure:"frame_interval" yaml:"frame_interval"`
	// Detector overrides the detector settings for this camera; zero fields keep the global ones.
	// Cameras differ: where people are a few dozen pixels tall (a wide view from high up),
	// yolox-nano finds and boxes them far better than the faster default.
	Detector CameraDetector `mapstructure:"detector" yaml:"detector"`
	// PrivacyMasks are parts of the view blacked out in every frame before anything looks at it:
	// nothing in them is detected, tracked or cropped, and no crop shows them (a neighbour's
	// window, the public street beyond the site). Each is a rectangle in fractions of the
	// frame's width and height, so it holds at any resolution.
	PrivacyMasks []Region `mapstructure:"privacy_masks" yaml:"privacy_masks,omitempty"`
}

// Region is a rectangle in fractions of a frame: X and Y of its top-left corner, its Width and
// Height, each between 0 and 1.
type Region struct {
	X      float64 `mapstructure:"x" yaml:"x"`
	Y      float64 `mapstructure:"y" yaml:"y"`
	Width  float64 `mapstructure:"width" yaml:"width"`
	Height float64 `mapstructure:"height" yaml:"height"`
}

// Pixels is the region in a frame of width x height pixels, rounded outwards: a mask covers at
// least what it says.
func (r Region) Pixels(width, height int) image.Rectangle {
	return image.Rect(int(math.Floor(r.X*float64(width))), int(math.Floor(r.Y*float64(height))),
		int(math.Ceil((r.X+r.Width)*float64(width))), int(math.Ceil((r.Y+r.Height)*float64(height)))).
		Intersect(image.Rect(0, 0, width, height))
}

// CameraDetector is what one camera may override of the detector settings.
type CameraDetector struct {
	Model      string  `mapstructure:"model" yaml:"model"`
	InputSize  int     `mapstructure:"input_size" yaml:"input_size"`
	Confidence float64 `mapstructure:"confidence" yaml:"confidence"`
}

// WithOverrides returns the detector settings with one camera's overrides applied.
func (d Detector) WithOverrides(overrides CameraDetector) Detector {
	if overrides.Model != "" {
		d.Model = overrides.Model
		// The global input size was chosen for the global model.
		d.InputSize = 0
	}
	if overrides.InputSize != 0 {
		d.InputSize = overrides.InputSize
	}
	if overrides.Confidence != 0 {
		d.Confidence = overrides.Confidence
	}
	return d
}

// Ingest configures decoding and sampling.
type Ingest struct {
	// SampleFPS is the target processing rate; 0 processes every decoded frame. Default 0.
	SampleFPS float64 `mapstructure:"sample_fps" yaml:"sample_fps"`
	// Timestamps is "stream" (position in the source plus start time) or "wallclock" (time of
	// decoding). Default stream.
	Timestamps string `mapstructure:"timestamps" yaml:"timestamps"`
	// ReconnectInitial and ReconnectMax bound the exponential backoff of a dropped live source.
	ReconnectInitial time.Duration `mapstructure:"reconnect_initial" yaml:"reconnect_initial"`
	ReconnectMax     time.Duration `mapstructure:"reconnect_max" yaml:"reconnect_max"`
	// MaxReconnects gives up on a live source after this many failed reopen attempts in a row;
	// 0 retries forever.
	MaxReconnects int `mapstructure:"max_reconnects" yaml:"max_reconnects"`
	// RTSPTransport is how RTSP cameras send their video: "tcp" (default), "udp", or "auto"
	// (FFmpeg's own choice: UDP first). Over UDP a lost packet smears the rest of its frame, and
	// smeared people make bad crops, searches and training data; TCP resends instead. It applies
	// to every camera of the process (OpenCV reads it from OPENCV_FFMPEG_CAPTURE_OPTIONS, which,
	// when set by hand with its own rtsp_transport, wins).
	RTSPTransport string `mapstructure:"rtsp_transport" yaml:"rtsp_transport"`
	// StallTimeout is how long a live camera (RTSP, an HTTP stream, a device) may deliver no
	// frame before it is reopened, and how long an RTSP or HTTP camera may take to answer when it
	// is opened; 0 leaves both to OpenCV, which waits 30 s. Default 10s.
	StallTimeout time.Duration `mapstructure:"stall_timeout" yaml:"stall_timeout"`
	// FailoverGroup, when set, makes this `reid ingest` one of a group of processes that run the
	// same cameras in turn: the processes with the same group over the same crop store elect one
	// by a lease kept there; it runs the cameras and the others stand by, and when it stops or its
	// machine is lost another takes over (within about 20 s). Give each process of a group the
	// same cameras. Empty (the default): this process runs its cameras on its own.
	FailoverGroup string `mapstructure:"failover_group" yaml:"failover_group"`
}

// Detector configures person detection.
type Detector struct {
	// Model is "yolo-fastest" (Darknet, one class) or "yolox-nano" (ONNX, COCO person class).
	Model string `mapstructure:"model" yaml:"model"`
	// ModelsDir holds the model files. Default <shared_dir>/models/detector.
	ModelsDir string `mapstructure:"models_dir" yaml:"models_dir"`
	// InputSize is the side of the square network input; 0 uses the model's own (320 or 416).
	InputSize int `mapstructure:"input_size" yaml:"input_size"`
	// FitInput shapes the network input to the frame instead of a square: InputSize on the long
	// side, the short side rounded up to a multiple of 32 (320x256 for a 4:3 camera, 320x192 for
	// 16:9). The detector does a fifth (4:3) to two fifths (16:9) less work, but finds slightly
	// different people at the edge of its threshold: on the measured scenes, a static object the
	// square input scored just under Confidence went over it (docs/BENCHMARKS.md, "Ingest").
	FitInput bool `mapstructure:"fit_input" yaml:"fit_input"`
	// Confidence is the minimum score of a kept box. Default 0.5: at 0.3 Yolo-Fastest keeps
	// tracking cones and signs in vtest.avi as people (static false hits that flood the crop store).
	Confidence float64 `mapstructure:"confidence" yaml:"confidence"`
	// NMS is the IoU above which overlapping boxes are suppressed. Default 0.45.
	NMS float64 `mapstructure:"nms" yaml:"nms"`
	// MinWidth and MinHeight drop boxes smaller than this many pixels in the frame.
	MinWidth  int `mapstructure:"min_width" yaml:"min_width"`
	MinHeight int `mapstructure:"min_height" yaml:"min_height"`
	// MinAspect and MaxAspect bound height/width of a kept box (people are taller than wide).
	MinAspect float64 `mapstructure:"min_aspect" yaml:"min_aspect"`
	MaxAspect float64 `mapstructure:"max_aspect" yaml:"max_aspect"`
	// Threads is OpenCV's thread count; 0 leaves OpenCV's default.
	Threads int `mapstructure:"threads" yaml:"threads"`
}

// Tracker configures the per-camera SORT tracker.
type Tracker struct {
	// IoU is the minimum overlap for a detection to continue a track. Default 0.3.
	IoU float64 `mapstructure:"iou" yaml:"iou"`
	// MaxAge is how many frames a track survives without a detection. Default 5.
	MaxAge int `mapstructure:"max_age" yaml:"max_age"`
	// MinHits is how many matched frames a track needs before its crops are emitted. Default 2.
	MinHits int `mapstructure:"min_hits" yaml:"min_hits"`
}

// Crops configures the crop images made from kept detections.
type Crops struct {
	Width       int `mapstructure:"width" yaml:"width"`
	Height      int `mapstructure:"height" yaml:"height"`
	JPEGQuality int `mapstructure:"jpeg_quality" yaml:"jpeg_quality"`
	// MinInterval is the least time between two crops of one track, to avoid near-duplicates.
	MinInterval time.Duration `mapstructure:"min_interval" yaml:"min_interval"`
	// StationaryInterval is the least time between two crops of a track whose box has stayed in
	// one place (IoU >= 0.85) for 10 seconds. A person standing still, or a static object the
	// detector takes for one (a sign, a mannequin), would otherwise be cropped every MinInterval
	// for as long as it stays: at the default, over a quarter of a million near-identical crops a
	// day, each stored, embedded, and crowding search results. Default 30s; 0 turns it off.
	StationaryInterval time.Duration `mapstructure:"stationary_interval" yaml:"stationary_interval"`
	// Padding enlarges each box by this fraction of its size before cropping.
	Padding float64 `mapstructure:"padding" yaml:"padding"`
}

// CropStore configures where crop images and their metadata are kept.
type CropStore struct {
	// Backend is "local" (under <data_dir>/crops) or "s3".
	Backend string `mapstructure:"backend" yaml:"backend"`
	S3      S3     `mapstructure:"s3" yaml:"s3"`
}

// S3 is an S3-compatible object store.
type S3 struct {
	Endpoint  string `mapstructure:"endpoint" yaml:"endpoint"`
	Bucket    string `mapstructure:"bucket" yaml:"bucket"`
	Region    string `mapstructure:"region" yaml:"region"`
	AccessKey string `mapstructure:"access_key" yaml:"access_key" secret:"true"`
	SecretKey string `mapstructure:"secret_key" yaml:"secret_key" secret:"true"`
	UseTLS    bool   `mapstructure:"use_tls" yaml:"use_tls"`
}

// Stream configures the Kafka side. With no brokers an embedded Kafka-protocol broker is started.
type Stream struct {
	Brokers    []string `mapstructure:"brokers" yaml:"brokers"`
	CropsTopic string   `mapstructure:"crops_topic" yaml:"crops_topic"`
	DLQTopic   string   `mapstructure:"dlq_topic" yaml:"dlq_topic"`
	// Partitions is the crops topic's partition count when reid creates it, and the number of
	// writes the producer keeps in flight (one lane per partition; a camera stays in one).
	Partitions int `mapstructure:"partitions" yaml:"partitions"`
	// TopicRetention is how long the broker keeps records of the topics reid creates (their
	// retention.ms); the crop store, not the topic, is the lasting copy. Records a consumer has not
	// read by then are gone, so it must outlast any outage of the embedder or archiver. Topics that
	// exist already keep their settings. Default 168h (Kafka's default).
	TopicRetention time.Duration `mapstructure:"topic_retention" yaml:"topic_retention"`
	// EmbedGroup and ArchiveGroup are the consumer-group ids of the embedder and archiver.
	EmbedGroup   string `mapstructure:"embed_group" yaml:"embed_group"`
	ArchiveGroup string `mapstructure:"archive_group" yaml:"archive_group"`
	// Buffer bounds the producer's in-memory queue; a full queue blocks ingest (backpressure).
	Buffer int `mapstructure:"buffer" yaml:"buffer"`
	// DropWhenFull drops (counting and logging each drop) instead of blocking when the buffer is full.
	DropWhenFull bool          `mapstructure:"drop_when_full" yaml:"drop_when_full"`
	BatchSize    int           `mapstructure:"batch_size" yaml:"batch_size"`
	BatchTimeout time.Duration `mapstructure:"batch_timeout" yaml:"batch_timeout"`
	// EmbeddedAddr is the loopback address of the embedded broker. Default 127.0.0.1:9092.
	EmbeddedAddr string `mapstructure:"embedded_addr" yaml:"embedded_addr"`
	// EmbeddedSyncWrites makes the embedded broker fsync each produced batch before acknowledging
	// it, so that a crop ingest was told is safe survives a power loss, as the index's sync_writes
	// does for vectors (a crash of the process alone loses nothing either way). Default true; off,
	// the broker takes about 1.6x the records per second (docs/BENCHMARKS.md, "Stream").
	EmbeddedSyncWrites bool   `mapstructure:"embedded_sync_writes" yaml:"embedded_sync_writes"`
	SASLUser           string `mapstructure:"sasl_user" yaml:"sasl_user"`
	SASLPassword       string `mapstructure:"sasl_password" yaml:"sasl_password" secret:"true"`
	TLS                bool   `mapstructure:"tls" yaml:"tls"`
}

// Torch configures the libtorch runtime.
type Torch struct {
	// Device is "cpu" or "cuda" (or "cuda:N").
	Device string `mapstructure:"device" yaml:"device"`
	// Threads is the intra-op thread count; 0 uses the number of CPUs.
	Threads int `mapstructure:"threads" yaml:"threads"`
}

// Embedder configures the crop-to-vector stage.
type Embedder struct {
	// Model is a registered model version id; empty uses the active version.
	Model     string        `mapstructure:"model" yaml:"model"`
	BatchSize int           `mapstructure:"batch_size" yaml:"batch_size"`
	MaxWait   time.Duration `mapstructure:"max_wait" yaml:"max_wait"`
	// Flip averages each embedding with that of the mirrored crop.
	Flip bool `mapstructure:"flip" yaml:"flip"`
	// FollowInterval is how often a running embedder checks the registry's active version and,
	// when another one was promoted, moves to it (reid run also backfills its gallery and then
	// moves lookups). 0 keeps the model it started with; so does a pinned Model. Default 30s.
	FollowInterval time.Duration `mapstructure:"follow_interval" yaml:"follow_interval"`
	// BackfillShare is the part of the time reid run's background backfill after a model switch
	// may work, from 0 (exclusive) to 1: it shares the model and the CPU with the live crops,
	// which then wait less behind it. Default 0.5. reid index backfill always works flat out.
	BackfillShare float64 `mapstructure:"backfill_share" yaml:"backfill_share"`
}

// Index configures the vector index.
type Index struct {
	// Backend is "embedded" (under <data_dir>/index) or "milvus".
	Backend  string   `mapstructure:"backend" yaml:"backend"`
	Embedded Embedded `mapstructure:"embedded" yaml:"embedded"`
	Milvus   Milvus   `mapstructure:"milvus" yaml:"milvus"`
}

// Embedded configures the embedded vector index.
type Embedded struct {
	// Mode is "exact" or "hnsw".
	Mode string `mapstructure:"mode" yaml:"mode"`
	// Precision keeps vectors in memory as "float16" (default: half the memory of "float32",
	// exact search twice as fast, the same neighbours but for near-ties; docs/BENCHMARKS.md,
	// "Index"). Files hold float32 either way, so it can change between restarts (snapshots
	// written under float16 hold the rounded values).
	Precision      string `mapstructure:"precision" yaml:"precision"`
	HNSWM          int    `mapstructure:"hnsw_m" yaml:"hnsw_m"`
	EfConstruction int    `mapstructure:"ef_construction" yaml:"ef_construction"`
	EfSearch       int    `mapstructure:"ef_search" yaml:"ef_search"`
	// SyncWrites fsyncs the write-ahead log before an upsert is acknowledged.
	SyncWrites bool `mapstructure:"sync_writes" yaml:"sync_writes"`
}

// Milvus configures the Milvus backend.
type Milvus struct {
	Address  string `mapstructure:"address" yaml:"address"`
	Database string `mapstructure:"database" yaml:"database"`
	User     string `mapstructure:"user" yaml:"user"`
	Password string `mapstructure:"password" yaml:"password" secret:"true"`
	Token    string `mapstructure:"token" yaml:"token" secret:"true"`
	TLS      bool   `mapstructure:"tls" yaml:"tls"`
	// Alias is the collection alias that lookups read; activate re-points it.
	Alias string `mapstructure:"alias" yaml:"alias"`
	// IndexType is HNSW or IVF_FLAT; Metric is COSINE or IP.
	IndexType string `mapstructure:"index_type" yaml:"index_type"`
	Metric    string `mapstructure:"metric" yaml:"metric"`
	// CollectionPrefix names each model version's collection: <prefix><version>.
	CollectionPrefix string `mapstructure:"collection_prefix" yaml:"collection_prefix"`
}

// Lookup configures the HTTP API and web page.
type Lookup struct {
	// Addr is where `reid serve` listens. Default 127.0.0.1:8080 (loopback).
	Addr string `mapstructure:"addr" yaml:"addr"`
	// APIKeys are accepted keys; empty with no file disables authentication (loopback use).
	APIKeys     []string `mapstructure:"api_keys" yaml:"api_keys" secret:"true"`
	APIKeysFile string   `mapstructure:"api_keys_file" yaml:"api_keys_file"`
	// AdminAPIKeys may do everything the API keys may, and also erase crops (POST /v1/erasures).
	// Without any keys, only loopback clients may erase.
	AdminAPIKeys     []string `mapstructure:"admin_api_keys" yaml:"admin_api_keys" secret:"true"`
	AdminAPIKeysFile string   `mapstructure:"admin_api_keys_file" yaml:"admin_api_keys_file"`
	// ScopedAPIKeys are keys that see only some cameras: a tenant's own, or a contractor's. A
	// list, not a map: the configuration's map keys lose their case, and camera ids keep theirs.
	ScopedAPIKeys []ScopedAPIKeys `mapstructure:"scoped_api_keys" yaml:"scoped_api_keys,omitempty"`
	// AllowUnauthenticated lets the lookup server listen on a non-loopback address with no API
	// keys. Default false: without keys it refuses anything but loopback.
	AllowUnauthenticated bool `mapstructure:"allow_unauthenticated" yaml:"allow_unauthenticated"`
	// RateLimit is requests per second per key; Burst is the bucket size.
	RateLimit      float64  `mapstructure:"rate_limit" yaml:"rate_limit"`
	Burst          int      `mapstructure:"burst" yaml:"burst"`
	MaxUploadBytes int64    `mapstructure:"max_upload_bytes" yaml:"max_upload_bytes"`
	MaxImagePixels int      `mapstructure:"max_image_pixels" yaml:"max_image_pixels"`
	CORSOrigins    []string `mapstructure:"cors_origins" yaml:"cors_origins"`
	// AuditLog is a JSON-lines file of who searched for what; default <data_dir>/audit.log.
	AuditLog string `mapstructure:"audit_log" yaml:"audit_log"`
	// FollowInterval is how often reid serve checks which gallery is active and moves to a newly
	// activated one (with its model); 0 keeps the gallery it started with. Default 30s.
	FollowInterval time.Duration `mapstructure:"follow_interval" yaml:"follow_interval"`
	// WatchInterval is how often the lookup server checks its watches (POST /v1/watches) for new
	// sightings; 0 turns watches off. Default 5s.
	WatchInterval time.Duration `mapstructure:"watch_interval" yaml:"watch_interval"`
	// WatchWindow is how far back, in crop time, each check looks: a crop that reaches the index
	// later than this after it was seen raises no alert. Default 10m.
	WatchWindow time.Duration `mapstructure:"watch_window" yaml:"watch_window"`
	// WatchMinScore is a new watch's default alert threshold on the track-consensus rank score.
	// Default 0.7.
	WatchMinScore float64 `mapstructure:"watch_min_score" yaml:"watch_min_score"`
	// WatchServer, when set, is the base URL (http(s)://host:port) of the lookup server that
	// keeps the site's watches: this one then forwards the watch and alert routes to it and keeps
	// and checks none itself, so that every lookup server behind a load balancer answers them the
	// same; the webhooks are the watch server's to deliver. Empty: this server keeps its own
	// (lookup.watch_interval). "elect": the lookup servers sharing the watch store (the bucket, or
	// one data dir) elect the one that keeps them, by a lease kept there; the others forward to
	// it, and another takes over within seconds when it stops or its machine is lost.
	WatchServer string `mapstructure:"watch_server" yaml:"watch_server"`
	// AdvertiseURL is this server's base URL (http://host:port) as the other lookup servers reach
	// it, with watch_server: elect. Default: http://<this machine's host name>:<lookup.addr's
	// port>, or http://<lookup.addr> when addr names a host.
	AdvertiseURL string `mapstructure:"advertise_url" yaml:"advertise_url"`
	// AlertWebhook, when set, is an http(s) URL that every alert is POSTed to as JSON
	// ({"alerts":[...]}), in order, at least once, retried until it answers 2xx.
	AlertWebhook string `mapstructure:"alert_webhook" yaml:"alert_webhook"`
	// AlertWebhookSecret signs each delivery: X-Reid-Signature: sha256=HMAC-SHA256(secret, body).
	AlertWebhookSecret string `mapstructure:"alert_webhook_secret" yaml:"alert_webhook_secret" secret:"true"`
}

// ScopedAPIKeys are API keys limited to some cameras. Their holders search, list, watch and export
// only those cameras' crops, as if the others did not exist; they are never admin keys.
type ScopedAPIKeys struct {
	// Name identifies the scope in the audit log and owns the watches its keys make.
	Name     string   `mapstructure:"name" yaml:"name"`
	Cameras  []string `mapstructure:"cameras" yaml:"cameras"`
	Keys     []string `mapstructure:"keys" yaml:"keys" secret:"true"`
	KeysFile string   `mapstructure:"keys_file" yaml:"keys_file"`
	// AlertWebhook, when set, receives the alerts of the scope's watches, as lookup.alert_webhook
	// receives every alert, signed with AlertWebhookSecret when that is set.
	AlertWebhook       string `mapstructure:"alert_webhook" yaml:"alert_webhook,omitempty"`
	AlertWebhookSecret string `mapstructure:"alert_webhook_secret" yaml:"alert_webhook_secret,omitempty" secret:"true"`
}

// Ops configures the operations listener of reid's long-running processes (run, serve, ingest,
// embed, archive, broker). Stage processes at scale have no lookup server, so this is where they
// are watched.
type Ops struct {
	// Addr is where /metrics, /healthz and (with Profiling) /debug/pprof/ are served; empty
	// serves nothing. Give each process on one host its own port (REID_OPS_ADDR).
	Addr string `mapstructure:"addr" yaml:"addr"`
	// Profiling serves Go's runtime profiles under /debug/pprof/ on Addr, which must then be
	// loopback: profiles reveal the process's internals.
	Profiling bool `mapstructure:"profiling" yaml:"profiling"`
}

// Retention bounds how long person crops and their vectors are kept.
type Retention struct {
	// MaxAge deletes crops (images, metadata and every gallery's vectors) whose frame time is
	// older than this; 0 keeps everything. Sites usually must set one (person images are
	// personal data).
	MaxAge time.Duration `mapstructure:"max_age" yaml:"max_age"`
	// PerCamera keeps some cameras' crops for less time than MaxAge (a camera that sees more
	// than the others should keep, in a site's data protection assessment). A list, not a map:
	// the configuration's map keys lose their case, and camera ids keep theirs.
	PerCamera []CameraRetention `mapstructure:"per_camera" yaml:"per_camera,omitempty"`
	// Interval is how often reid run, archive and embed prune. Default 1h.
	Interval time.Duration `mapstructure:"interval" yaml:"interval"`
}

// CameraRetention is one camera's own retention period: at least 1m and, when retention.max_age
// is set, at most that.
type CameraRetention struct {
	Camera string        `mapstructure:"camera" yaml:"camera"`
	MaxAge time.Duration `mapstructure:"max_age" yaml:"max_age"`
}

// Trainer configures `reid train`, the Cluster Contrast adaptation to the site's crops. The
// defaults are the reference implementation's, sized for a GPU; on a CPU fewer iterations per
// epoch and smaller batches are the practical choice (docs/TRAINING.md).
type Trainer struct {
	Epochs        int `mapstructure:"epochs" yaml:"epochs" json:"epochs"`
	ItersPerEpoch int `mapstructure:"iters_per_epoch" yaml:"iters_per_epoch" json:"iters_per_epoch"`
	// BatchSize crops per step, Instances crops of each pseudo-identity among them.
	BatchSize int     `mapstructure:"batch_size" yaml:"batch_size" json:"batch_size"`
	Instances int     `mapstructure:"instances" yaml:"instances" json:"instances"`
	LR        float64 `mapstructure:"lr" yaml:"lr" json:"lr"`
	// LRStep is the number of epochs after which the learning rate drops tenfold.
	LRStep int `mapstructure:"lr_step" yaml:"lr_step" json:"lr_step"`
	// Eps and MinSamples are DBSCAN's, on the k-reciprocal Jaccard distance.
	Eps        float64 `mapstructure:"eps" yaml:"eps" json:"eps"`
	MinSamples int     `mapstructure:"min_samples" yaml:"min_samples" json:"min_samples"`
	// MaxCrops caps the crops trained on (evenly spread over the selection); 0 takes all.
	MaxCrops int `mapstructure:"max_crops" yaml:"max_crops" json:"max_crops"`
	// KeepCameraBias clusters raw features as the reference does, instead of camera-centred ones
	// (docs/TRAINING.md: on raw features clusters stay inside cameras).
	KeepCameraBias bool `mapstructure:"keep_camera_bias" yaml:"keep_camera_bias" json:"keep_camera_bias"`
	// CameraProxies contrasts each crop with its own camera's share of the clusters only; false
	// contrasts it with every cluster, as the reference does (docs/TRAINING.md).
	CameraProxies bool `mapstructure:"camera_proxies" yaml:"camera_proxies" json:"camera_proxies"`
	// InterCamera weighs a second loss term that pulls a person's parts in different cameras
	// together (camera-aware proxies' inter-camera loss; 0 turns it off; without camera_proxies
	// there are no parts and it does nothing), and HardNegatives is how many other clusters' parts
	// it contrasts each crop with.
	InterCamera   float64 `mapstructure:"inter_camera" yaml:"inter_camera" json:"inter_camera"`
	HardNegatives int     `mapstructure:"hard_negatives" yaml:"hard_negatives" json:"hard_negatives"`
	Seed          uint64  `mapstructure:"seed" yaml:"seed" json:"seed"`
	// ValidationDir, when set, is a labelled data set of the site (Market-1501 layout: query/ and
	// bounding_box_test/) on which reid train scores the parent and the trained model; with
	// --promote it promotes only a model that passes PromoteIf there.
	ValidationDir string `mapstructure:"validation_dir" yaml:"validation_dir" json:"validation_dir,omitempty"`
	// PromoteIf is what --promote asks of a trained model's validation mAP against its parent's:
	// "not_worse" (at least the parent's) or "surely_better" (the 95% interval of the difference,
	// a paired bootstrap over the queries, above zero: better beyond what the set's size leaves
	// to chance).
	PromoteIf string `mapstructure:"promote_if" yaml:"promote_if" json:"promote_if"`
}

// Promotion rules (Trainer.PromoteIf).
const (
	PromoteIfNotWorse     = "not_worse"
	PromoteIfSurelyBetter = "surely_better"
)

// Default returns the configuration used when nothing overrides it.
func Default() Options {
	return Options{
		DataDir:   "./data",
		LogLevel:  "info",
		SharedDir: "../shared",
		Ingest: Ingest{
			Timestamps:       "stream",
			ReconnectInitial: 500 * time.Millisecond,
			ReconnectMax:     30 * time.Second,
			RTSPTransport:    "tcp",
			StallTimeout:     10 * time.Second,
		},
		Detector: Detector{
			Model:      "yolo-fastest",
			Confidence: 0.5,
			NMS:        0.45,
			MinWidth:   12,
			MinHeight:  32,
			MinAspect:  1.0,
			MaxAspect:  5.0,
		},
		Tracker:   Tracker{IoU: 0.3, MaxAge: 5, MinHits: 2},
		Crops:     Crops{Width: 128, Height: 256, JPEGQuality: 90, MinInterval: 300 * time.Millisecond, StationaryInterval: 30 * time.Second, Padding: 0.05},
		CropStore: CropStore{Backend: "local"},
		Stream: Stream{
			CropsTopic:         "crops",
			DLQTopic:           "crops.dlq",
			Partitions:         4,
			EmbedGroup:         "reid-embedder",
			ArchiveGroup:       "reid-archiver",
			Buffer:             1024,
			BatchSize:          64,
			BatchTimeout:       50 * time.Millisecond,
			EmbeddedSyncWrites: true,
			EmbeddedAddr:       "127.0.0.1:9092",
			TopicRetention:     168 * time.Hour,
		},
		Torch:    Torch{Device: "cpu"},
		Embedder: Embedder{BatchSize: 32, MaxWait: 100 * time.Millisecond, FollowInterval: 30 * time.Second, BackfillShare: 0.5},
		Index: Index{
			Backend:  "embedded",
			Embedded: Embedded{Mode: "exact", Precision: "float16", HNSWM: 16, EfConstruction: 200, EfSearch: 128, SyncWrites: true},
			Milvus: Milvus{
				Address:          "localhost:19530",
				Database:         "default",
				Alias:            "reid_active",
				IndexType:        "HNSW",
				Metric:           "COSINE",
				CollectionPrefix: "reid_",
			},
		},
		Lookup: Lookup{
			Addr:           "127.0.0.1:8080",
			RateLimit:      20,
			Burst:          40,
			MaxUploadBytes: 10 << 20,
			MaxImagePixels: 4096 * 4096,
			FollowInterval: 30 * time.Second,
			WatchInterval:  5 * time.Second,
			WatchWindow:    10 * time.Minute,
			WatchMinScore:  0.7,
		},
		Retention: Retention{Interval: time.Hour},
		Trainer: Trainer{Epochs: 50, ItersPerEpoch: 200, BatchSize: 256, Instances: 16, LR: 3.5e-4, LRStep: 20,
			Eps: 0.6, MinSamples: 4, CameraProxies: true, InterCamera: 0.5, HardNegatives: 50, Seed: 1,
			PromoteIf: PromoteIfNotWorse},
	}
}

// FieldError is a configuration problem at one key.
type FieldError struct {
	Key     string
	Message string
}

func (e *FieldError) Error() string { return fmt.Sprintf("config %s: %s", e.Key, e.Message) }

// Validate checks every field and returns all problems at once, each naming its key.
func (o *Options) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	if o.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "must be debug, info, warn or error, not %q", o.LogLevel)
	}
	seen := map[string]bool{}
	for i, camera := range o.Cameras {
		key := fmt.Sprintf("cameras[%d]", i)
		if !validID(camera.ID) {
			bad(key+".id", "must be 1-64 letters, digits, '-', '_' or '.', not %q", camera.ID)
		} else if seen[camera.ID] {
			bad(key+".id", "camera %q is configured twice", camera.ID)
		}
		seen[camera.ID] = true
		if camera.Source == "" {
			bad(key+".source", "must not be empty")
		}
		if camera.SampleFPS < 0 {
			bad(key+".sample_fps", "must be >= 0, not %v", camera.SampleFPS)
		}
		if camera.StartTime != "" {
			if _, err := time.Parse(time.RFC3339, camera.StartTime); err != nil {
				bad(key+".start_time", "must be RFC 3339 (2006-01-02T15:04:05Z): %v", err)
			}
		}
		if camera.FrameInterval < 0 {
			bad(key+".frame_interval", "must be >= 0")
		}
		for j, region := range camera.PrivacyMasks {
			if !(region.X >= 0 && region.Y >= 0 && region.Width > 0 && region.Height > 0 &&
				region.X+region.Width <= 1+1e-9 && region.Y+region.Height <= 1+1e-9) {
				bad(fmt.Sprintf("%s.privacy_masks[%d]", key, j), "must lie within the frame, in fractions of it (x, y >= 0; width, height > 0; x + width and y + height at most 1), not %+v", region)
			}
		}
	}
	if o.Ingest.SampleFPS < 0 {
		bad("ingest.sample_fps", "must be >= 0, not %v", o.Ingest.SampleFPS)
	}
	if o.Ingest.Timestamps != "stream" && o.Ingest.Timestamps != "wallclock" {
		bad("ingest.timestamps", "must be stream or wallclock, not %q", o.Ingest.Timestamps)
	}
	if o.Ingest.ReconnectInitial <= 0 {
		bad("ingest.reconnect_initial", "must be > 0")
	}
	if o.Ingest.ReconnectMax < o.Ingest.ReconnectInitial {
		bad("ingest.reconnect_max", "must be >= ingest.reconnect_initial")
	}
	if o.Ingest.RTSPTransport != "tcp" && o.Ingest.RTSPTransport != "udp" && o.Ingest.RTSPTransport != "auto" {
		bad("ingest.rtsp_transport", "must be tcp, udp or auto, not %q", o.Ingest.RTSPTransport)
	}
	if o.Ingest.StallTimeout < 0 {
		bad("ingest.stall_timeout", "must be >= 0, not %v", o.Ingest.StallTimeout)
	}
	if o.Ingest.MaxReconnects < 0 {
		bad("ingest.max_reconnects", "must be >= 0")
	}
	if o.Ingest.FailoverGroup != "" && !ValidID(o.Ingest.FailoverGroup) {
		bad("ingest.failover_group", "must be letters, digits, '-', '_' or '.', not %q", o.Ingest.FailoverGroup)
	}
	unit := func(key string, value float64) {
		if value < 0 || value > 1 {
			bad(key, "must be between 0 and 1, not %v", value)
		}
	}
	checkDetector := func(key string, detector Detector) {
		if detector.Model != "yolo-fastest" && detector.Model != "yolox-nano" {
			bad(key+".model", "must be yolo-fastest or yolox-nano, not %q", detector.Model)
		}
		if detector.InputSize < 0 || detector.InputSize%32 != 0 {
			bad(key+".input_size", "must be 0 or a positive multiple of 32, not %d", detector.InputSize)
		}
		unit(key+".confidence", detector.Confidence)
	}
	checkDetector("detector", o.Detector)
	for i, camera := range o.Cameras {
		if camera.Detector != (CameraDetector{}) {
			checkDetector(fmt.Sprintf("cameras[%d].detector", i), o.Detector.WithOverrides(camera.Detector))
		}
	}
	unit("detector.nms", o.Detector.NMS)
	unit("tracker.iou", o.Tracker.IoU)
	if o.Detector.MinWidth < 0 {
		bad("detector.min_width", "must be >= 0")
	}
	if o.Detector.MinHeight < 0 {
		bad("detector.min_height", "must be >= 0")
	}
	if o.Detector.MinAspect < 0 || (o.Detector.MaxAspect > 0 && o.Detector.MaxAspect < o.Detector.MinAspect) {
		bad("detector.max_aspect", "must be >= detector.min_aspect >= 0")
	}
	if o.Detector.Threads < 0 {
		bad("detector.threads", "must be >= 0")
	}
	if o.Tracker.MaxAge < 1 {
		bad("tracker.max_age", "must be >= 1, not %d", o.Tracker.MaxAge)
	}
	if o.Tracker.MinHits < 1 {
		bad("tracker.min_hits", "must be >= 1, not %d", o.Tracker.MinHits)
	}
	if o.Crops.Width < 16 || o.Crops.Width > 1024 {
		bad("crops.width", "must be 16-1024, not %d", o.Crops.Width)
	}
	if o.Crops.Height < 16 || o.Crops.Height > 1024 {
		bad("crops.height", "must be 16-1024, not %d", o.Crops.Height)
	}
	if o.Crops.JPEGQuality < 1 || o.Crops.JPEGQuality > 100 {
		bad("crops.jpeg_quality", "must be 1-100, not %d", o.Crops.JPEGQuality)
	}
	if o.Crops.MinInterval < 0 {
		bad("crops.min_interval", "must be >= 0")
	}
	if o.Crops.StationaryInterval < 0 {
		bad("crops.stationary_interval", "must be >= 0 (0 turns it off)")
	}
	if o.Crops.Padding < 0 || o.Crops.Padding > 1 {
		bad("crops.padding", "must be between 0 and 1, not %v", o.Crops.Padding)
	}
	switch o.CropStore.Backend {
	case "local":
	case "s3":
		if o.CropStore.S3.Bucket == "" {
			bad("cropstore.s3.bucket", "must be set when cropstore.backend is s3")
		}
		if o.CropStore.S3.Endpoint == "" {
			bad("cropstore.s3.endpoint", "must be set when cropstore.backend is s3")
		}
	default:
		bad("cropstore.backend", "must be local or s3, not %q", o.CropStore.Backend)
	}
	if o.Stream.CropsTopic == "" {
		bad("stream.crops_topic", "must not be empty")
	}
	if o.Stream.DLQTopic == "" || o.Stream.DLQTopic == o.Stream.CropsTopic {
		bad("stream.dlq_topic", "must be set and differ from stream.crops_topic")
	}
	if o.Stream.Partitions < 1 {
		bad("stream.partitions", "must be >= 1, not %d", o.Stream.Partitions)
	}
	if o.Stream.TopicRetention < time.Minute {
		bad("stream.topic_retention", "must be at least 1m, not %s", o.Stream.TopicRetention)
	}
	if o.Stream.Buffer < 1 {
		bad("stream.buffer", "must be >= 1, not %d", o.Stream.Buffer)
	}
	if o.Stream.BatchSize < 1 {
		bad("stream.batch_size", "must be >= 1, not %d", o.Stream.BatchSize)
	}
	if o.Stream.BatchTimeout <= 0 {
		bad("stream.batch_timeout", "must be > 0")
	}
	if o.Stream.EmbedGroup == "" || o.Stream.ArchiveGroup == "" || o.Stream.EmbedGroup == o.Stream.ArchiveGroup {
		bad("stream.archive_group", "stream.embed_group and stream.archive_group must be set and differ")
	}
	if o.Torch.Device != "cpu" && o.Torch.Device != "cuda" && !isCUDAOrdinal(o.Torch.Device) {
		bad("torch.device", "must be cpu, cuda or cuda:N, not %q", o.Torch.Device)
	}
	if o.Torch.Threads < 0 {
		bad("torch.threads", "must be >= 0")
	}
	if o.Embedder.BatchSize < 1 || o.Embedder.BatchSize > 4096 {
		bad("embedder.batch_size", "must be 1-4096, not %d", o.Embedder.BatchSize)
	}
	if o.Embedder.MaxWait < 0 {
		bad("embedder.max_wait", "must be >= 0")
	}
	if o.Embedder.FollowInterval < 0 {
		bad("embedder.follow_interval", "must be >= 0")
	}
	if o.Embedder.BackfillShare <= 0 || o.Embedder.BackfillShare > 1 {
		bad("embedder.backfill_share", "must be more than 0 and at most 1, not %v", o.Embedder.BackfillShare)
	}
	switch o.Index.Backend {
	case "embedded":
	case "milvus":
		if o.Index.Milvus.Address == "" {
			bad("index.milvus.address", "must be set when index.backend is milvus")
		}
	default:
		bad("index.backend", "must be embedded or milvus, not %q", o.Index.Backend)
	}
	if o.Index.Embedded.Mode != "exact" && o.Index.Embedded.Mode != "hnsw" {
		bad("index.embedded.mode", "must be exact or hnsw, not %q", o.Index.Embedded.Mode)
	}
	if o.Index.Embedded.Precision != "float32" && o.Index.Embedded.Precision != "float16" {
		bad("index.embedded.precision", "must be float32 or float16, not %q", o.Index.Embedded.Precision)
	}
	if o.Index.Embedded.HNSWM < 4 || o.Index.Embedded.HNSWM > 128 {
		bad("index.embedded.hnsw_m", "must be 4-128, not %d", o.Index.Embedded.HNSWM)
	}
	if o.Index.Embedded.EfConstruction < 8 {
		bad("index.embedded.ef_construction", "must be >= 8, not %d", o.Index.Embedded.EfConstruction)
	}
	if o.Index.Embedded.EfSearch < 1 {
		bad("index.embedded.ef_search", "must be >= 1, not %d", o.Index.Embedded.EfSearch)
	}
	if o.Index.Milvus.IndexType != "HNSW" && o.Index.Milvus.IndexType != "IVF_FLAT" {
		bad("index.milvus.index_type", "must be HNSW or IVF_FLAT, not %q", o.Index.Milvus.IndexType)
	}
	if o.Index.Milvus.Metric != "COSINE" && o.Index.Milvus.Metric != "IP" {
		bad("index.milvus.metric", "must be COSINE or IP, not %q", o.Index.Milvus.Metric)
	}
	if o.Index.Milvus.Alias == "" {
		bad("index.milvus.alias", "must not be empty")
	}
	if o.Lookup.Addr == "" {
		bad("lookup.addr", "must not be empty")
	}
	if o.Ops.Addr != "" {
		if _, port, err := net.SplitHostPort(o.Ops.Addr); err != nil {
			bad("ops.addr", "must be HOST:PORT, not %q", o.Ops.Addr)
		} else if number, err := strconv.Atoi(port); err != nil || number < 0 || number > 65535 {
			bad("ops.addr", "has a bad port in %q", o.Ops.Addr)
		}
	}
	if o.Ops.Profiling && o.Ops.Addr == "" {
		bad("ops.profiling", "needs ops.addr")
	}
	if o.Retention.MaxAge < 0 || (o.Retention.MaxAge > 0 && o.Retention.MaxAge < time.Minute) {
		bad("retention.max_age", "must be 0 (keep everything) or at least 1m, not %s", o.Retention.MaxAge)
	}
	perCamera := map[string]bool{}
	for i, own := range o.Retention.PerCamera {
		key := fmt.Sprintf("retention.per_camera[%d]", i)
		switch {
		case !ValidID(own.Camera):
			bad(key+".camera", "%q is not a camera id (letters, digits, '-', '_', '.')", own.Camera)
		case perCamera[own.Camera]:
			bad(key+".camera", "names %s a second time", own.Camera)
		case own.MaxAge < time.Minute:
			bad(key+".max_age", "must be at least 1m, not %s", own.MaxAge)
		case o.Retention.MaxAge > 0 && own.MaxAge > o.Retention.MaxAge:
			bad(key+".max_age", "is %s for %s, longer than retention.max_age (%s): a camera may keep its crops for less time than the site, not more",
				own.MaxAge, own.Camera, o.Retention.MaxAge)
		}
		perCamera[own.Camera] = true
	}
	if o.Retention.Interval < time.Second {
		bad("retention.interval", "must be at least 1s, not %s", o.Retention.Interval)
	}
	for key, value := range map[string]int{"trainer.epochs": o.Trainer.Epochs, "trainer.iters_per_epoch": o.Trainer.ItersPerEpoch,
		"trainer.lr_step": o.Trainer.LRStep, "trainer.min_samples": o.Trainer.MinSamples} {
		if value < 1 {
			bad(key, "must be >= 1, not %d", value)
		}
	}
	if o.Trainer.Instances < 2 || o.Trainer.BatchSize%max(o.Trainer.Instances, 1) != 0 || o.Trainer.BatchSize < o.Trainer.Instances {
		bad("trainer.batch_size", "must be a multiple of trainer.instances (>= 2), not %d and %d", o.Trainer.BatchSize, o.Trainer.Instances)
	}
	if !(o.Trainer.LR > 0) {
		bad("trainer.lr", "must be > 0")
	}
	if !(o.Trainer.Eps > 0 && o.Trainer.Eps < 1) {
		bad("trainer.eps", "must be between 0 and 1, not %v", o.Trainer.Eps)
	}
	if o.Trainer.InterCamera < 0 {
		bad("trainer.inter_camera", "must be >= 0, not %v", o.Trainer.InterCamera)
	}
	if o.Trainer.HardNegatives < 1 {
		bad("trainer.hard_negatives", "must be >= 1, not %d", o.Trainer.HardNegatives)
	}
	if o.Trainer.MaxCrops < 0 {
		bad("trainer.max_crops", "must be >= 0")
	}
	if o.Trainer.PromoteIf != PromoteIfNotWorse && o.Trainer.PromoteIf != PromoteIfSurelyBetter {
		bad("trainer.promote_if", "must be %s or %s, not %q", PromoteIfNotWorse, PromoteIfSurelyBetter, o.Trainer.PromoteIf)
	}
	if o.Lookup.FollowInterval < 0 {
		bad("lookup.follow_interval", "must be >= 0")
	}
	if o.Lookup.WatchInterval < 0 {
		bad("lookup.watch_interval", "must be >= 0")
	}
	if o.Lookup.WatchInterval > 0 && o.Lookup.WatchWindow < o.Lookup.WatchInterval {
		bad("lookup.watch_window", "must be at least lookup.watch_interval (%s), not %s", o.Lookup.WatchInterval, o.Lookup.WatchWindow)
	}
	if o.Lookup.WatchMinScore <= 0 || o.Lookup.WatchMinScore > 1 {
		bad("lookup.watch_min_score", "must be in (0, 1], not %g", o.Lookup.WatchMinScore)
	}
	checkWebhook := func(key, webhook, secret string) {
		if webhook != "" {
			if parsed, err := url.Parse(webhook); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
				bad(key, "must be an http:// or https:// URL, not %q", MaskURLCredentials(webhook))
			} else if o.Lookup.WatchInterval == 0 {
				bad(key, "needs watches: lookup.watch_interval is 0")
			}
		} else if secret != "" {
			bad(key+"_secret", "is set without %s", key)
		}
	}
	checkWebhook("lookup.alert_webhook", o.Lookup.AlertWebhook, o.Lookup.AlertWebhookSecret)
	baseURL := func(key, value, what string) {
		if parsed, err := url.Parse(value); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" ||
			(parsed.Path != "" && parsed.Path != "/") || parsed.RawQuery != "" || parsed.User != nil {
			bad(key, "must be %s, not %q", what, MaskURLCredentials(value))
		}
	}
	switch o.Lookup.WatchServer {
	case "":
	case "elect":
		if o.Lookup.WatchInterval == 0 {
			bad("lookup.watch_server", "is elect, but watches are off: lookup.watch_interval is 0")
		}
	default:
		baseURL("lookup.watch_server", o.Lookup.WatchServer, `a lookup server's base URL (http(s)://host:port) or "elect"`)
	}
	if o.Lookup.AdvertiseURL != "" {
		baseURL("lookup.advertise_url", o.Lookup.AdvertiseURL, "this server's base URL, http(s)://host:port")
	}
	scopeNames := map[string]bool{}
	for i, scope := range o.Lookup.ScopedAPIKeys {
		key := fmt.Sprintf("lookup.scoped_api_keys[%d]", i)
		switch {
		case !ValidID(scope.Name):
			bad(key+".name", "%q is not a name (letters, digits, '-', '_', '.')", scope.Name)
		case scopeNames[scope.Name]:
			bad(key+".name", "names %s a second time", scope.Name)
		}
		scopeNames[scope.Name] = true
		if len(scope.Cameras) == 0 {
			bad(key+".cameras", "is empty: a scope names the cameras its keys may see")
		}
		for j, camera := range scope.Cameras {
			if !ValidID(camera) {
				bad(fmt.Sprintf("%s.cameras[%d]", key, j), "%q is not a camera id (letters, digits, '-', '_', '.')", camera)
			}
		}
		if len(scope.Keys) == 0 && scope.KeysFile == "" {
			bad(key+".keys", "is empty and there is no keys_file: a scope needs keys")
		}
		checkWebhook(key+".alert_webhook", scope.AlertWebhook, scope.AlertWebhookSecret)
	}
	if o.Lookup.RateLimit < 0 {
		bad("lookup.rate_limit", "must be >= 0")
	}
	if o.Lookup.Burst < 1 {
		bad("lookup.burst", "must be >= 1")
	}
	if o.Lookup.MaxUploadBytes < 1024 {
		bad("lookup.max_upload_bytes", "must be >= 1024, not %d", o.Lookup.MaxUploadBytes)
	}
	if o.Lookup.MaxImagePixels < 64*64 {
		bad("lookup.max_image_pixels", "must be >= 4096, not %d", o.Lookup.MaxImagePixels)
	}
	return errors.Join(errs...)
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// ValidID reports whether id is usable as a camera id or other path-safe identifier.
func ValidID(id string) bool { return validID(id) && id != "." && id != ".." }

func isCUDAOrdinal(device string) bool {
	var ordinal int
	n, err := fmt.Sscanf(device, "cuda:%d", &ordinal)
	return err == nil && n == 1 && ordinal >= 0
}
