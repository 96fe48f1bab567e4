package config

import (
	"image"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestDefaultIsValid(t *testing.T) {
	options := Default()
	if err := options.Validate(); err != nil {
		t.Fatalf("default options invalid: %v", err)
	}
}

func TestBadFilesNameTheKey(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"testdata/unknown-key.bad.yaml", []string{"detector.confidance: unknown key"}},
		{"testdata/bad-values.bad.yaml", []string{"detector.confidence", "crops.jpeg_quality", "index.backend", "trainer.promote_if",
			"retention.per_camera[0].max_age: is 48h0m0s for gate, longer than retention.max_age", "retention.per_camera[1].camera", "cameras[0].privacy_masks[0]: must lie within the frame",
			"lookup.scoped_api_keys[0].keys: is empty", "lookup.scoped_api_keys[1].name: names north a second time", "lookup.scoped_api_keys[1].cameras: is empty",
			"lookup.scoped_api_keys[0].alert_webhook: must be an http:// or https:// URL", "lookup.watch_server: must be a lookup server's base URL", "lookup.advertise_url: must be this server's base URL"}},
		{"testdata/bad-type.bad.yaml", []string{"crops.width"}},
		{"testdata/bad-camera.bad.yaml", []string{"cameras[1].colour: unknown key"}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Load(tc.file, nil, nil, nil)
			if err == nil {
				t.Fatal("bad config accepted")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestCameraValidation(t *testing.T) {
	options := Default()
	options.Cameras = []Camera{{ID: "../etc", Source: "x"}, {ID: "a", Source: ""}, {ID: "a", Source: "y"},
		{ID: "b", Source: "z", Detector: CameraDetector{Model: "yolov9", InputSize: 100, Confidence: 2}}}
	err := options.Validate()
	for _, want := range []string{"cameras[0].id", "cameras[1].source", "cameras[2].id: camera \"a\" is configured twice",
		"cameras[3].detector.model", "cameras[3].detector.input_size", "cameras[3].detector.confidence"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestDetectorOverrides(t *testing.T) {
	global := Default().Detector
	global.InputSize = 416
	tests := []struct {
		name      string
		overrides CameraDetector
		want      func(Detector) Detector
	}{
		{"none", CameraDetector{}, func(d Detector) Detector { return d }},
		// The global input size was chosen for the global model, so another model gets its own.
		{"model", CameraDetector{Model: "yolox-nano"}, func(d Detector) Detector { d.Model, d.InputSize = "yolox-nano", 0; return d }},
		{"model and size", CameraDetector{Model: "yolox-nano", InputSize: 320}, func(d Detector) Detector { d.Model, d.InputSize = "yolox-nano", 320; return d }},
		{"confidence", CameraDetector{Confidence: 0.3}, func(d Detector) Detector { d.Confidence = 0.3; return d }},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got, want := global.WithOverrides(test.overrides), test.want(global); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestCameraDetectorFromFile(t *testing.T) {
	options, err := Load("testdata/camera-detector.yaml", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []CameraDetector{{Model: "yolox-nano", Confidence: 0.4}, {}}
	for i, camera := range options.Cameras {
		if camera.Detector != want[i] {
			t.Errorf("camera %s: detector overrides %+v, want %+v", camera.ID, camera.Detector, want[i])
		}
	}
}

func TestPrecedenceFileThenEnvironmentThenFlags(t *testing.T) {
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags.String("data-dir", "", "")
	flags.String("log-level", "", "")
	if err := flags.Parse([]string{"--data-dir", "/from/flag"}); err != nil {
		t.Fatal(err)
	}
	environ := []string{
		"REID_DATA_DIR=/from/env",
		"REID_DETECTOR_CONFIDENCE=0.55",
		"REID_STREAM_BROKERS=k1:9092,k2:9092",
		"HOME=/root",
	}
	options, err := Load("testdata/good.yaml", environ, flags, map[string]string{"data-dir": "data_dir", "log-level": "log_level"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag beats env and file", options.DataDir, "/from/flag"},
		{"env beats file", options.Detector.Confidence, 0.55},
		{"file beats default", options.Detector.Model, "yolox-nano"},
		{"default kept", options.Detector.NMS, 0.45},
		{"duration parsed", options.Crops.MinInterval, 500 * time.Millisecond},
		{"cameras from file", len(options.Cameras), 2},
		{"camera field", options.Cameras[0].SampleFPS, 5.0},
		{"env list", strings.Join(options.Stream.Brokers, "|"), "k1:9092|k2:9092"},
		{"a privacy mask", options.Cameras[1].PrivacyMasks[0].Pixels(1920, 1080), image.Rect(1440, 0, 1920, 540)},
		{"a camera's own retention, its id's case kept", options.Retention.PerCamera[0], CameraRetention{Camera: "Lobby", MaxAge: 72 * time.Hour}},
		{"a key scope's cameras, their case kept", strings.Join(options.Lookup.ScopedAPIKeys[0].Cameras, "|"), "gate-1|Lobby"},
	}
	for _, check := range checks {
		if check.got != check.want {
			t.Errorf("%s: got %v, want %v", check.name, check.got, check.want)
		}
	}
}

// A value of the wrong type is reported like every other bad value: one line per key, naming the
// key and where the value came from, so the user knows which variable, flag or file to fix.
func TestWrongTypesSayWhereTheValueCameFrom(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		environ []string
		want    []string
	}{
		{"environment", "", []string{"REID_RETENTION_MAX_AGE=forever"},
			[]string{"config retention.max_age: ", `(REID_RETENTION_MAX_AGE="forever")`}},
		{"file", "testdata/bad-type.bad.yaml", nil,
			[]string{"config crops.width: ", "in testdata/bad-type.bad.yaml)"}},
		{"two variables", "", []string{"REID_RETENTION_MAX_AGE=forever", "REID_CROPS_JPEG_QUALITY=high"},
			[]string{`(REID_RETENTION_MAX_AGE="forever")`, `config crops.jpeg_quality: `, `(REID_CROPS_JPEG_QUALITY="high")`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.file, c.environ, nil, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "decoding failed") {
				t.Errorf("error %q is mapstructure's own message", err)
			}
		})
	}
}

func TestUnknownEnvironmentVariableRejected(t *testing.T) {
	_, err := Load("", []string{"REID_DETECTOR_CONFIDANCE=0.5"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "REID_DETECTOR_CONFIDANCE") {
		t.Fatalf("want error naming the variable, got %v", err)
	}
	_, err = Load("", []string{"REID_CROPS_JPEG_QUALITY=abc"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "jpeg_quality") {
		t.Fatalf("want error naming crops.jpeg_quality, got %v", err)
	}
	// The variables of the Makefile's targets and tools are not configuration, and reid runs
	// under them (REID_DEMO_TRAIN=1 make demo runs every reid command with it set).
	for _, name := range []string{"REID_SHARED", "REID_BENCH", "REID_DEMO_TRAIN", "REID_MILVUS_ADDR", "REID_KAFKA_BROKERS"} {
		if _, err := Load("", []string{name + "=1"}, nil, nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestMaskedHidesSecretsOnly(t *testing.T) {
	options, err := Load("testdata/good.yaml", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := YAML(Masked(options))
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, secret := range []string{"hunter2", "k1", "k2", "s3cret", "k3-tenant-secret", "tenant-hook-secret"} {
		if strings.Contains(text, "- "+secret) || strings.Contains(text, ": "+secret) {
			t.Errorf("secret %q printed:\n%s", secret, text)
		}
	}
	for _, want := range []string{"password: '********'", "min_interval: 500ms", "id: gate-1", "model: yolox-nano",
		"source: rtsp://admin:********@cam1.local/stream", "source: ../shared/video/vtest.avi", "name: north-tenant", "alert_webhook: https://north.example/reid-alerts"} {
		if !strings.Contains(text, want) {
			t.Errorf("printed config lacks %q:\n%s", want, text)
		}
	}
	if options.Index.Milvus.Password != "hunter2" || !strings.Contains(options.Cameras[0].Source, "s3cret") {
		t.Error("Masked changed the original options")
	}
}

func TestRetention(t *testing.T) {
	cases := []struct {
		env     string
		wantAge time.Duration
		wantErr string
	}{
		{"", 0, ""},
		{"REID_RETENTION_MAX_AGE=720h", 720 * time.Hour, ""},
		{"REID_RETENTION_MAX_AGE=30s", 0, "retention.max_age"},
		{"REID_RETENTION_MAX_AGE=-1h", 0, "retention.max_age"},
		{"REID_RETENTION_INTERVAL=0s", 0, "retention.interval"},
		{"REID_STREAM_TOPIC_RETENTION=30s", 0, "stream.topic_retention"},
		{"REID_LOOKUP_FOLLOW_INTERVAL=-1s", 0, "lookup.follow_interval"},
		{"REID_LOOKUP_WATCH_WINDOW=1s", 0, "lookup.watch_window"},
		{"REID_LOOKUP_WATCH_MIN_SCORE=1.5", 0, "lookup.watch_min_score"},
		{"REID_LOOKUP_ALERT_WEBHOOK=ftp://example.com/x", 0, "lookup.alert_webhook"},
		{"REID_LOOKUP_ALERT_WEBHOOK_SECRET=abc", 0, "lookup.alert_webhook_secret"},
		{"REID_EMBEDDER_FOLLOW_INTERVAL=-1s", 0, "embedder.follow_interval"},
		{"REID_EMBEDDER_BACKFILL_SHARE=0", 0, "embedder.backfill_share"},
		{"REID_EMBEDDER_BACKFILL_SHARE=1.5", 0, "embedder.backfill_share"},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			var env []string
			if c.env != "" {
				env = []string{c.env}
			}
			options, err := Load("", env, nil, nil)
			switch {
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one naming %s", err, c.wantErr)
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr == "" && (options.Retention.MaxAge != c.wantAge || options.Retention.Interval != time.Hour):
				t.Errorf("retention %+v, want max age %s every hour", options.Retention, c.wantAge)
			}
		})
	}
}

func TestOpsValidation(t *testing.T) {
	cases := []struct {
		env     []string
		wantErr string
	}{
		{nil, ""},
		{[]string{"REID_OPS_ADDR=127.0.0.1:9464"}, ""},
		{[]string{"REID_OPS_ADDR=:0", "REID_OPS_PROFILING=true"}, ""},
		{[]string{"REID_OPS_ADDR=9464"}, "ops.addr: must be HOST:PORT"},
		{[]string{"REID_OPS_ADDR=127.0.0.1:http"}, "ops.addr: has a bad port"},
		{[]string{"REID_OPS_ADDR=127.0.0.1:70000"}, "ops.addr: has a bad port"},
		{[]string{"REID_OPS_PROFILING=true"}, "ops.profiling: needs ops.addr"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.env, " "), func(t *testing.T) {
			options, err := Load("", c.env, nil, nil)
			switch {
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, c.wantErr)
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr == "" && len(c.env) > 0 && options.Ops.Addr == "":
				t.Fatal("REID_OPS_ADDR was not read")
			}
		})
	}
}

func TestIndexPrecision(t *testing.T) {
	cases := []struct {
		env     string
		want    string
		wantErr bool
	}{
		{"", "float16", false},
		{"REID_INDEX_EMBEDDED_PRECISION=float32", "float32", false},
		{"REID_INDEX_EMBEDDED_PRECISION=int8", "", true},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			var env []string
			if c.env != "" {
				env = []string{c.env}
			}
			options, err := Load("", env, nil, nil)
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), "index.embedded.precision") {
					t.Fatalf("error %v, want one naming index.embedded.precision", err)
				}
				return
			}
			if err != nil || options.Index.Embedded.Precision != c.want {
				t.Fatalf("precision %q (%v), want %q", options.Index.Embedded.Precision, err, c.want)
			}
		})
	}
}

func TestRTSPTransportSetting(t *testing.T) {
	options, err := Load("", nil, nil, nil)
	if err != nil || options.Ingest.RTSPTransport != "tcp" {
		t.Fatalf("default rtsp_transport %q (%v), want tcp", options.Ingest.RTSPTransport, err)
	}
	if _, err := Load("", []string{"REID_INGEST_RTSP_TRANSPORT=quic"}, nil, nil); err == nil || !strings.Contains(err.Error(), "ingest.rtsp_transport") {
		t.Fatalf("rtsp_transport quic: %v, want an error naming ingest.rtsp_transport", err)
	}
	if options.Ingest.StallTimeout != 10*time.Second {
		t.Errorf("default stall_timeout %v, want 10s", options.Ingest.StallTimeout)
	}
	if _, err := Load("", []string{"REID_INGEST_STALL_TIMEOUT=-1s"}, nil, nil); err == nil || !strings.Contains(err.Error(), "ingest.stall_timeout") {
		t.Fatalf("stall_timeout -1s: %v, want an error naming ingest.stall_timeout", err)
	}
}

func TestMaskURLCredentials(t *testing.T) {
	cases := []struct{ source, want string }{
		{"rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:********@10.0.0.5:554/stream1"},
		{"rtsp://admin:pa/ss@word@10.0.0.5/stream1", "rtsp://admin:********@10.0.0.5/stream1"},
		{"rtsp://0f3a9c77e1@10.0.0.5/stream1", "rtsp://********@10.0.0.5/stream1"},
		{"http://cam.local/video.mjpg", "http://cam.local/video.mjpg"},
		{"/srv/video/gate.mp4", "/srv/video/gate.mp4"},
	}
	for _, c := range cases {
		if got := MaskURLCredentials(c.source); got != c.want {
			t.Errorf("MaskURLCredentials(%q) = %q, want %q", c.source, got, c.want)
		}
	}
}

func TestWatchServerValues(t *testing.T) {
	for _, test := range []struct {
		watchServer, advertise string
		interval               time.Duration
		want                   string // "" for valid
	}{
		{"", "", 5 * time.Second, ""},
		{"http://10.0.0.5:8080", "", 5 * time.Second, ""},
		{"elect", "", 5 * time.Second, ""},
		{"elect", "http://lookup-2.site:8080", 5 * time.Second, ""},
		{"elect", "", 0, "lookup.watch_server: is elect, but watches are off"},
		{"elected", "", 5 * time.Second, `lookup.watch_server: must be a lookup server's base URL (http(s)://host:port) or "elect"`},
		{"elect", "http://user:pw@lookup-2:8080", 5 * time.Second, "lookup.advertise_url: must be this server's base URL"},
	} {
		options := Default()
		options.Lookup.WatchServer, options.Lookup.AdvertiseURL, options.Lookup.WatchInterval = test.watchServer, test.advertise, test.interval
		err := options.Validate()
		if test.want == "" && err != nil || test.want != "" && (err == nil || !strings.Contains(err.Error(), test.want)) {
			t.Errorf("watch_server %q, advertise_url %q, interval %v: %v, want %q", test.watchServer, test.advertise, test.interval, err, test.want)
		}
	}
}

func TestFailoverGroupValues(t *testing.T) {
	for group, valid := range map[string]bool{"": true, "north": true, "site-2.gate": true, "../x": false, "a b": false} {
		options := Default()
		options.Ingest.FailoverGroup = group
		err := options.Validate()
		if valid != (err == nil) || !valid && !strings.Contains(err.Error(), "ingest.failover_group") {
			t.Errorf("failover group %q: %v", group, err)
		}
	}
}
