package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/backup"
	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/retention"
	"github.com/reid-project/reid/stream"
)

// TestCheckCommand checks a site whose cameras all work, and one with a missing file and an
// unreachable RTSP camera: each part gets its own line, failures fail the command, and the RTSP
// password is never printed.
func TestCheckCommand(t *testing.T) {
	dataDir := pipelineFixture(t)
	video := testassets.Path(t, "video/vtest.avi")
	// An application taking alerts; the check must not send it one.
	var posted atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posted.Add(1) }))
	defer receiver.Close()
	cases := []struct {
		name    string
		cameras string
		// lookupAddr, when set, replaces the fixture's loopback lookup address (no API keys).
		lookupAddr string
		// webhook, when set, is lookup.alert_webhook.
		webhook string
		ok      []string
		fail    []string
	}{
		{"working", "  - id: gate\n    source: " + video + "\n", "", "",
			[]string{"data dir", "crop store", "detector yolo-fastest", "camera gate", "model", "index embedded", "broker embedded", "lookup "}, nil},
		{"broken cameras", "  - id: gate\n    source: " + video + "\n  - id: missing\n    source: /nonexistent/gate.mp4\n" +
			"  - id: door\n    source: rtsp://admin:s3cret@127.0.0.1:1/stream\n", "", "",
			[]string{"camera gate", "model"}, []string{"camera missing", "camera door"}},
		{"no cameras", "", "", "", []string{"data dir", "model"}, []string{"cameras"}},
		{"lookup open to all", "  - id: gate\n    source: " + video + "\n", "0.0.0.0:8080", "",
			[]string{"camera gate"}, []string{"lookup 0.0.0.0:8080"}},
		{"alert webhook up", "  - id: gate\n    source: " + video + "\n", "", receiver.URL + "/alerts",
			[]string{"camera gate", "alert webhook"}, nil},
		{"alert webhook down", "  - id: gate\n    source: " + video + "\n", "", "http://127.0.0.1:1/alerts",
			[]string{"camera gate"}, []string{"alert webhook"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.lookupAddr != "" {
				t.Setenv("REID_LOOKUP_ADDR", c.lookupAddr)
			}
			if c.webhook != "" {
				t.Setenv("REID_LOOKUP_ALERT_WEBHOOK", c.webhook)
			}
			configPath := filepath.Join(t.TempDir(), "site.yaml")
			text := "cameras:\n" + c.cameras
			if c.cameras == "" {
				text = "cameras: []\n"
			}
			if err := os.WriteFile(configPath, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runReid(t, "--config", configPath, "--data-dir", dataDir, "check", "--timeout", "10s")
			if (err != nil) != (len(c.fail) > 0) {
				t.Errorf("check returned %v for failures %v\n%s", err, c.fail, out)
			}
			for _, part := range c.ok {
				if !strings.Contains(out, "ok    "+part) {
					t.Errorf("no ok line for %s:\n%s", part, out)
				}
			}
			for _, part := range c.fail {
				if !strings.Contains(out, "FAIL  "+part) {
					t.Errorf("no FAIL line for %s:\n%s", part, out)
				}
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("the camera's password was printed:\n%s", out)
			}
		})
	}
	if posted.Load() != 0 {
		t.Errorf("the check sent the alert webhook %d requests", posted.Load())
	}
	checkValidationLine(t, dataDir, video)
	// A record of erasures that cannot be read would stop the archiver and the embedder.
	erasures := filepath.Join(dataDir, "crops", "@erasures")
	if err := os.MkdirAll(erasures, 0o755); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(erasures, "20261129T060000.000000000Z-0badf00d.json")
	if err := os.WriteFile(broken, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	sitePath := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(sitePath, []byte("cameras:\n  - id: gate\n    source: "+video+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runReid(t, "--config", sitePath, "--data-dir", dataDir, "check", "--timeout", "10s")
	if err == nil || !strings.Contains(out, "FAIL  crop store") || !strings.Contains(out, "0badf00d.json") {
		t.Errorf("check with a broken erasure file: %v\n%s", err, out)
	}
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	// A camera's privacy masks, in pixels of its frames (768 x 576).
	if err := os.WriteFile(sitePath, []byte("cameras:\n  - id: gate\n    source: "+video+"\n    privacy_masks:\n      - {x: 0.5, y: 0, width: 0.5, height: 0.25}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = runReid(t, "--config", sitePath, "--data-dir", dataDir, "check", "--timeout", "10s")
	if !regexp.MustCompile(`ok +camera gate .*, masked 384,0-768,144\n`).MatchString(out) {
		t.Errorf("check with a privacy mask:\n%s", out)
	}
	// Detector models elsewhere than --shared-dir: the line says which settings find them.
	configPath := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(configPath, []byte("cameras:\n  - id: gate\n    source: "+video+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runReid(t, "--config", configPath, "--data-dir", dataDir, "--shared-dir", t.TempDir(), "check")
	if err == nil || !strings.Contains(out, "FAIL  detector yolo-fastest") || !strings.Contains(out, "REID_SHARED_DIR") {
		t.Errorf("check without detector models: %v\n%s", err, out)
	}
}

// checkValidationLine: with trainer.validation_dir set, reid check reads the set and counts the
// queries that can score a model, and fails on a set that cannot.
func checkValidationLine(t *testing.T, dataDir, video string) {
	t.Helper()
	configPath := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(configPath, []byte("cameras:\n  - id: gate\n    source: "+video+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	usable := filepath.Join(t.TempDir(), "validation")
	set, err := eval.OpenLabelledSet(usable)
	if err != nil {
		t.Fatal(err)
	}
	jpeg := []byte{0xff, 0xd8, 0xff, 0xd9}
	if _, err := set.AddPerson([]eval.LabelledCrop{{CropID: "a", Camera: "gate", JPEG: jpeg, Query: true}, {CropID: "b", Camera: "hall", JPEG: jpeg, Query: true},
		{CropID: "c", Camera: "hall", JPEG: jpeg}}, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir, want string
	}{
		{"usable", usable, "ok    validation set         " + usable + ": 1 people, 1 queries with a match in another camera"},
		{"missing", filepath.Join(t.TempDir(), "none"), "FAIL  validation set"},
	} {
		t.Setenv("REID_TRAINER_VALIDATION_DIR", c.dir)
		out, _ := runReid(t, "--config", configPath, "--data-dir", dataDir, "check", "--timeout", "10s")
		if !strings.Contains(out, c.want) {
			t.Errorf("%s validation set: want %q in\n%s", c.name, c.want, out)
		}
	}
}

// The lookup line says what each key scope sees, names a scope's camera that this configuration
// does not run, and fails a key that two lists claim (without printing it).
func TestCheckLookupScopes(t *testing.T) {
	const key = "tenant-key-0123456789"
	scope := func(name string, cameras ...string) config.ScopedAPIKeys {
		return config.ScopedAPIKeys{Name: name, Cameras: cameras, Keys: []string{key}}
	}
	for _, test := range []struct {
		name     string
		unscoped []string
		scopes   []config.ScopedAPIKeys
		want     string
		fails    bool
	}{
		{"one scope", nil, []config.ScopedAPIKeys{scope("north", "gate", "yard")},
			"0 API keys, 0 admin keys; scope north: 1 keys, cameras gate, yard (not in cameras: yard)", false},
		{"a key scoped and not", []string{key}, []config.ScopedAPIKeys{scope("north", "gate")},
			"a key of scope north is also an unscoped API key", true},
	} {
		options := config.Default()
		options.Cameras = []config.Camera{{ID: "gate", Source: "gate.mp4"}}
		options.Lookup.Addr = "0.0.0.0:8080"
		options.Lookup.APIKeys = test.unscoped
		options.Lookup.ScopedAPIKeys = test.scopes
		result := checkLookup(options)
		got := result.detail
		if result.err != nil {
			got = result.err.Error()
		}
		if (result.err != nil) != test.fails || !strings.Contains(got, test.want) || strings.Contains(got, key) {
			t.Errorf("%s: err %v, detail %q; want %q", test.name, result.err, result.detail, test.want)
		}
	}
}

type erasureList []cropstore.Erasure

func (l erasureList) Erasures(context.Context) ([]cropstore.Erasure, error) { return l, nil }

// The "broker after erasures" line says how many crops from before the newest erasure the broker
// still serves and who it waits for, fails once that has lasted too long, and is ok once they
// are purged.
func TestCheckBrokerPurge(t *testing.T) {
	broker, err := stream.StartBroker(stream.BrokerOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	options := config.Default()
	options.Stream.Brokers = broker.Addrs()
	conn := stream.ConnectionFrom(options.Stream, options.Stream.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := stream.EnsureTopics(ctx, conn, stream.TopicsFrom(options.Stream)...); err != nil {
		t.Fatal(err)
	}
	producer, err := stream.NewProducer(conn, stream.ProducerOptionsFrom(options.Stream))
	if err != nil {
		t.Fatal(err)
	}
	for frame := range int64(5) {
		if err := producer.Put(ctx, cropstore.CropRecord{ID: cropstore.NewID("gate", time.Now(), frame, 0), Camera: "gate", Time: time.Now(), Frame: frame,
			Track: 1, Box: cropstore.Box{Width: 8, Height: 16}, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := producer.Close(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	erasedAt := time.Now()
	record := erasureList{{Time: erasedAt.Add(-time.Hour)}, {Time: erasedAt}}

	if _, found := checkBrokerPurge(ctx, options, erasureList{}, erasedAt); found {
		t.Error("a line without erasures")
	}
	result, found := checkBrokerPurge(ctx, options, record, erasedAt.Add(2*time.Minute))
	if !found || result.err != nil || !strings.HasPrefix(result.detail, "5 records from before the erasure of") || !strings.Contains(result.detail, "no consumer group has taken them yet") {
		t.Errorf("just after the erasure: %+v", result)
	}
	result, _ = checkBrokerPurge(ctx, options, record, erasedAt.Add(20*time.Minute))
	if result.err == nil || !strings.Contains(result.err.Error(), "is reid run or reid archive running?") {
		t.Errorf("20 minutes after the erasure: %+v", result)
	}

	// Once a group has taken them and the purge has run, nothing is left.
	admin := &kafka.Client{Addr: kafka.TCP(options.Stream.Brokers...), Timeout: 10 * time.Second}
	var commits []kafka.OffsetCommit
	for partition := range options.Stream.Partitions {
		commits = append(commits, kafka.OffsetCommit{Partition: partition, Offset: 5})
	}
	if _, err := admin.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: options.Stream.ArchiveGroup, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{options.Stream.CropsTopic: commits}}); err != nil {
		t.Fatal(err)
	}
	purger, err := stream.NewPurger(conn, options.Stream.CropsTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer purger.Close()
	if purged, err := purger.Purge(ctx, erasedAt.Add(retention.PurgeSettle), false); err != nil || purged.Deleted != 5 || !purged.Complete {
		t.Fatalf("purge: %+v, %v", purged, err)
	}
	result, _ = checkBrokerPurge(ctx, options, record, erasedAt.Add(20*time.Minute))
	if result.err != nil || !strings.HasPrefix(result.detail, "nothing from before the newest erasure") {
		t.Errorf("after the purge: %+v", result)
	}
}

func TestCheckWatchServer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer up.Close()
	notReid := httptest.NewServer(http.NotFoundHandler())
	defer notReid.Close()
	for _, test := range []struct {
		name, url, want string
		fails           bool
	}{
		{"up", up.URL + "/", "up; this server forwards watches and alerts to it", false},
		{"not a lookup server", notReid.URL, "answered 404 Not Found: is it a reid lookup server?", true},
		{"down", "http://127.0.0.1:1", "cannot be reached, so watches and alerts are unavailable here", true},
	} {
		result := checkWatchServer(context.Background(), test.url)
		got := result.detail
		if result.err != nil {
			got = result.err.Error()
		}
		if (result.err != nil) != test.fails || !strings.Contains(got, test.want) {
			t.Errorf("%s: %q (err %v), want %q", test.name, got, result.err, test.want)
		}
	}
}

// TestCheckElectedWatchServer: with lookup.watch_server: elect, `reid check` reads the lease in
// the watch store and names the elected server, failing when none was elected, when the last one
// gave the watches up or stopped renewing, and when the one named is down.
func TestCheckElectedWatchServer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	lease := func(url string, renewed time.Time, released bool) string {
		return fmt.Sprintf(`{"holder":"a1","url":%q,"renewed":%q,"released":%v}`, url, renewed.Format(time.RFC3339Nano), released)
	}
	for _, test := range []struct {
		name, lease, want string
		fails             bool
	}{
		{"none elected", "", "none elected yet", true},
		{"elected and up", lease(up.URL, now.Add(-3*time.Second), false), up.URL + ", elected (lease renewed 3s ago): up", false},
		{"given up", lease(up.URL, now.Add(-time.Minute), true), "gave the watches up 1m0s ago and nobody has taken them over", true},
		{"stopped renewing", lease(up.URL, now.Add(-5*time.Minute), false), "last renewed its lease 5m0s ago", true},
		{"elected and down", lease("http://127.0.0.1:1", now, false), "cannot be reached", true},
		{"damaged", "{", "the lease watch-server.lease in", true},
	} {
		t.Run(test.name, func(t *testing.T) {
			options := config.Default()
			options.DataDir = t.TempDir()
			options.Lookup.WatchServer = "elect"
			if test.lease != "" {
				dir := filepath.Join(options.DataDir, "watches")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "watch-server.lease"), []byte(test.lease), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			result := checkElectedWatchServer(context.Background(), options, nil, now)
			got := result.detail
			if result.err != nil {
				got = result.err.Error()
			}
			if (result.err != nil) != test.fails || !strings.Contains(got, test.want) {
				t.Errorf("%q (err %v), want %q", got, result.err, test.want)
			}
		})
	}
}

// TestLookupServersElectTheirWatchServer: two lookup servers that reid builds from a configuration
// with lookup.watch_server: elect over one data dir, each advertising its lookup.addr: `reid check`
// names the first as the elected watch server, and the second once the first has stopped.
func TestLookupServersElectTheirWatchServer(t *testing.T) {
	dataDir := t.TempDir()
	store, err := cropstore.OpenLocal(filepath.Join(dataDir, "crops"))
	if err != nil {
		t.Fatal(err)
	}
	start := func() (options config.Options, stop func()) {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		options = config.Default()
		options.DataDir, options.Lookup.Addr, options.Lookup.WatchServer = dataDir, listener.Addr().String(), "elect"
		options.Lookup.AuditLog = filepath.Join(t.TempDir(), "audit.log")
		if err := options.Validate(); err != nil {
			t.Fatal(err)
		}
		server, auditLog, err := newLookupServer(options, lookup.Config{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- server.ServeListener(ctx, listener) }()
		return options, func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
			auditLog.Close()
		}
	}
	waitForElected := func(options config.Options, want string) {
		t.Helper()
		var result checkResult
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			result = checkElectedWatchServer(context.Background(), options, store, time.Now())
			if result.err == nil && strings.HasPrefix(result.detail, want+", elected") {
				return
			}
		}
		t.Fatalf("reid check says %q (%v), want %s elected", result.detail, result.err, want)
	}
	first, stopFirst := start()
	waitForElected(first, "http://"+first.Lookup.Addr)
	second, stopSecond := start()
	defer stopSecond()
	time.Sleep(time.Second)
	waitForElected(second, "http://"+first.Lookup.Addr) // the first keeps them
	stopFirst()
	waitForElected(second, "http://"+second.Lookup.Addr)
}

// TestCheckBackupErasures: `reid check` fails while the newest backup's record of erasures lacks
// one made since (recorded where nothing copied it on), passes once it is copied, and only notes a
// newest backup it cannot read (a disk mounted for backups alone).
func TestCheckBackupErasures(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	cropsDir := filepath.Join(dataDir, "crops")
	store, err := cropstore.OpenLocal(cropsDir)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "backup")
	parts, err := backup.Run(ctx, backup.Sources{Crops: cropsDir}, dest)
	if err == nil {
		err = backup.RecordStatus(dataDir, dest, time.Now(), parts, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if result, _ := checkBackup(dataDir, cropsDir, time.Now()); result.err != nil {
		t.Fatalf("right after the backup: %v", result.err)
	}
	if err := store.RecordErasure(ctx, cropstore.Erasure{Tracks: []cropstore.ErasedTrack{{Camera: "gate", Track: 7}}}); err != nil {
		t.Fatal(err)
	}
	if result, _ := checkBackup(dataDir, cropsDir, time.Now()); result.err == nil || !strings.Contains(result.err.Error(), "lacks 1 made since") {
		t.Errorf("with an erasure the backup lacks: %+v", result)
	}
	if copied, _, err := backup.CopyErasures(dataDir, cropsDir); err != nil || copied != 1 {
		t.Fatalf("copied %d (%v)", copied, err)
	}
	if result, _ := checkBackup(dataDir, cropsDir, time.Now()); result.err != nil {
		t.Errorf("once copied: %v", result.err)
	}
	if err := os.RemoveAll(dest); err != nil {
		t.Fatal(err)
	}
	if result, _ := checkBackup(dataDir, cropsDir, time.Now()); result.err != nil || !strings.Contains(result.detail, "cannot be compared") {
		t.Errorf("with the backup's disk gone: %+v", result)
	}
}

func TestCheckAdvertiseURL(t *testing.T) {
	for _, test := range []struct {
		advertise, want string
		fails           bool
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080: where the others forward", false},
		{"http://localhost:8080", "http://localhost:8080: where the others forward", false},
		{"http://no-such-host.invalid:8080", "set lookup.advertise_url", true},
	} {
		options := config.Default()
		options.Lookup.WatchServer, options.Lookup.AdvertiseURL = "elect", test.advertise
		result := checkAdvertiseURL(context.Background(), options)
		got := result.detail
		if result.err != nil {
			got = result.err.Error()
		}
		if (result.err != nil) != test.fails || !strings.Contains(got, test.want) {
			t.Errorf("%s: %q (err %v), want %q", test.advertise, got, result.err, test.want)
		}
	}
}
