package main

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/internal/testassets"
)

type discardSink struct{}

func (discardSink) Put(context.Context, cropstore.CropRecord) error { return nil }

// TestReloadCamerasOnHangup: a SIGHUP makes a running ingest take the configuration file's new
// camera list, and only that.
func TestReloadCamerasOnHangup(t *testing.T) {
	t.Setenv("REID_SHARED_DIR", testassets.SharedDir())
	dir := t.TempDir()
	configPath := filepath.Join(dir, "site.yaml")
	// Nothing listens on these: each camera is a live source that keeps reconnecting.
	writeCameras := func(ids ...string) {
		t.Helper()
		text := "cameras:\n"
		for i, id := range ids {
			text += "  - id: " + id + "\n    source: http://127.0.0.1:1/camera" + string(rune('0'+i)) + "\n"
		}
		if err := os.WriteFile(configPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	load := func() (config.Options, error) { return config.Load(configPath, os.Environ(), nil, nil) }
	writeCameras("gate", "hall")
	options, err := load()
	if err != nil {
		t.Fatal(err)
	}
	ingester, err := newIngester(options, discardSink{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ingester.Run(ctx, options.Cameras) }()
	// Each SIGHUP also gives what it loaded to whatever else re-reads its state (reid run: the
	// model registry, the lookup's keys).
	nudged := make(chan []config.Camera, 1)
	stop := reloadCamerasOnHangup(ctx, ingester, options, load, func(_ context.Context, loaded config.Options, err error) {
		if err != nil {
			t.Errorf("the hook was given %v", err)
		}
		nudged <- loaded.Cameras
	})
	defer stop()
	running := func() []string {
		var ids []string
		for _, camera := range ingester.Stats().Cameras {
			ids = append(ids, camera.Camera)
		}
		return ids
	}

	writeCameras("hall", "yard") // gate goes, yard comes; hall's source changes (it is second now)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Equal(running(), []string{"hall", "yard"}) {
		if time.Now().After(deadline) {
			t.Fatalf("cameras %v after the reload, want [hall yard]", running())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case cameras := <-nudged:
		if len(cameras) != 2 || cameras[0].ID != "hall" {
			t.Errorf("the hook was given cameras %+v, want the file's new ones", cameras)
		}
	case <-time.After(10 * time.Second):
		t.Error("the SIGHUP did not call the hook after the reload")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// recordingReconfigurer remembers the camera lists it was given.
type recordingReconfigurer struct {
	calls [][]config.Camera
	err   error
}

func (r *recordingReconfigurer) Reconfigure(_ context.Context, cameras []config.Camera) (added, removed, restarted []string, err error) {
	r.calls = append(r.calls, cameras)
	return nil, nil, nil, r.err
}

// A reload that cannot be applied keeps the cameras and the configuration in force.
func TestReloadCamerasKeepsCurrentOnErrors(t *testing.T) {
	current := config.Default()
	current.Cameras = []config.Camera{{ID: "gate", Source: "rtsp://gate"}}
	withCameras := func(cameras ...config.Camera) config.Options {
		options := current
		options.Cameras = cameras
		return options
	}
	tests := []struct {
		name        string
		loaded      config.Options
		loadErr     error
		reconfigErr error
		wantCalls   int
		wantCameras []string
	}{
		{"the file does not load", config.Options{}, errors.New("trainer.eps: must be between 0 and 1"), nil, 0, []string{"gate"}},
		{"no cameras left", withCameras(), nil, nil, 0, []string{"gate"}},
		{"the ingester refuses", withCameras(config.Camera{ID: "hall", Source: "0"}), nil, errors.New("ingest: not running"), 1, []string{"gate"}},
		{"applied", withCameras(config.Camera{ID: "hall", Source: "0"}), nil, nil, 1, []string{"hall"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			ingester := &recordingReconfigurer{err: test.reconfigErr}
			got := reloadCameras(context.Background(), ingester, current, test.loaded, test.loadErr)
			var ids []string
			for _, camera := range got.Cameras {
				ids = append(ids, camera.ID)
			}
			if len(ingester.calls) != test.wantCalls || !slices.Equal(ids, test.wantCameras) {
				t.Errorf("%d Reconfigure calls, cameras in force %v; want %d and %v", len(ingester.calls), ids, test.wantCalls, test.wantCameras)
			}
		})
	}
}

// TestServeReloadsKeysOnHangup: `reid serve` takes up its keys again on SIGHUP. A key deleted from
// the keys file stops working, and a configuration without keys is refused rather than turning
// authentication off. (lookup's TestSetKeys checks a scope's cameras changing.)
func TestServeReloadsKeysOnHangup(t *testing.T) {
	dir := t.TempDir()
	keysFile, configPath := filepath.Join(dir, "site.keys"), filepath.Join(dir, "site.yaml")
	addr := freeAddr(t)
	const oldKey, newKey, tenantKey = "old-key-0123456789abcdef", "new-key-0123456789abcdef", "tenant-key-0123456789ab"
	write := func(keys, tenantCameras string) {
		t.Helper()
		if err := os.WriteFile(keysFile, []byte(keys), 0o600); err != nil {
			t.Fatal(err)
		}
		text := "data_dir: " + filepath.Join(dir, "data") + "\nlookup:\n  addr: " + addr + "\n  api_keys_file: " + keysFile +
			"\n  scoped_api_keys:\n    - name: tenant\n      cameras: [" + tenantCameras + "]\n      keys: [" + tenantKey + "]\n"
		if err := os.WriteFile(configPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func() (config.Options, error) {
		options, err := config.Load(configPath, nil, nil, nil)
		if err != nil {
			return options, err
		}
		return options, options.Validate()
	}
	write(oldKey+"\n", "gate")
	options, err := load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, options, load) }()

	status := func(key string) int {
		request, _ := http.NewRequest("GET", "http://"+addr+"/v1/cameras", nil)
		request.Header.Set("Authorization", "Bearer "+key)
		response, err := http.DefaultClient.Do(request)
		if err != nil {
			return 0
		}
		response.Body.Close()
		return response.StatusCode
	}
	// waitFor sends SIGHUP (when hangup) and waits until every key is answered as wanted.
	waitFor := func(what string, hangup bool, want map[string]int) {
		t.Helper()
		if hangup {
			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := map[string]int{}
			for key := range want {
				got[key] = status(key)
			}
			if maps.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: keys answered %v, want %v", what, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("at start", false, map[string]int{oldKey: 200, newKey: 401, tenantKey: 200})

	write(newKey+"\n", "gate")
	waitFor("after the old key was revoked", true, map[string]int{oldKey: 401, newKey: 200, tenantKey: 200})

	// Removing every key is refused: the server keeps the keys it has.
	write("# nobody\n", "gate")
	if err := os.WriteFile(configPath, []byte("data_dir: "+filepath.Join(dir, "data")+"\nlookup:\n  addr: "+addr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	waitFor("after a reload without keys", false, map[string]int{oldKey: 401, newKey: 200, tenantKey: 200})

	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("serve: %v", err)
	}
}
