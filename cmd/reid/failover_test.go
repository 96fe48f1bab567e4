package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/internal/lease"
	"github.com/reid-project/reid/internal/testassets"
)

// liveCamera serves vtest.avi's first frames, looped, as a live MJPEG stream at 10 frames/s to
// every connection until the test ends: an IP camera that two ingest processes can both reach.
func liveCamera(t *testing.T) string {
	t.Helper()
	video, err := gocv.VideoCaptureFile(testassets.Path(t, "video/vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	frame := gocv.NewMat()
	var frames [][]byte
	for len(frames) < 60 && video.Read(&frame) {
		encoded, err := gocv.IMEncode(gocv.JPEGFileExt, frame)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, bytes.Clone(encoded.GetBytes()))
		encoded.Close()
	}
	frame.Close()
	video.Close()
	ended := make(chan struct{})
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		for i := 0; ; i++ {
			jpeg := frames[i%len(frames)]
			fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpeg))
			w.Write(jpeg)
			w.Write([]byte("\r\n"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-ended:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(server.Close)
	t.Cleanup(func() { close(ended) }) // first: Close waits for the handlers
	return server.URL + "/camera.mjpg"
}

// TestIngestFailoverGroup runs two `reid ingest` processes of one failover group on one live
// camera: the first runs it and the second stands by, making no crop; when the first stops, the
// second takes the camera over within a renewal and its crops follow.
func TestIngestFailoverGroup(t *testing.T) {
	dataDir := pipelineFixture(t)
	options := loadOptions(t, dataDir)
	options.Cameras = []config.Camera{{ID: "gate", Source: liveCamera(t)}}
	options.Ingest.FailoverGroup = "north"
	options.Ingest.SampleFPS = 5
	if err := options.Validate(); err != nil {
		t.Fatal(err)
	}
	load := func() (config.Options, error) { return options, nil }
	store, err := cropstore.OpenLocal(filepath.Join(dataDir, "crops"))
	if err != nil {
		t.Fatal(err)
	}
	stored := func() int {
		count := 0
		if err := store.Walk(context.Background(), cropstore.Filter{}, func(cropstore.CropRecord) error { count++; return nil }); err != nil {
			t.Fatal(err)
		}
		return count
	}
	type process struct {
		out  bytes.Buffer
		stop context.CancelFunc
		done chan error
	}
	start := func() *process {
		p := &process{done: make(chan error, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		p.stop = cancel
		go func() { p.done <- runIngest(ctx, &p.out, options, 0, false, load) }()
		return p
	}
	waitFor := func(what string, condition func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !condition(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	crops := func(p *process) int {
		t.Helper()
		match := regexp.MustCompile(`crops (\d+)`).FindStringSubmatch(p.out.String())
		if match == nil {
			t.Fatalf("no summary: %q", p.out.String())
		}
		n, _ := strconv.Atoi(match[1])
		return n
	}

	first := start()
	waitFor("the first process's crops", func() bool { return stored() >= 5 })
	second := start()
	defer second.stop()
	time.Sleep(4 * time.Second) // the second looks at the lease at least once
	first.stop()
	if err := <-first.done; err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	atStop := stored()
	if made := crops(first); made != atStop {
		t.Fatalf("the store holds %d crops when the first process stops, which made %d: the second made crops while standing by", atStop, made)
	}
	waitFor("the second process's crops", func() bool { return stored() > atStop })
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("the second process's first crop came %v after the first stopped", took)
	}
	if result := checkFailoverGroup(context.Background(), options, store, time.Now()); result.err != nil || !strings.Contains(result.detail, "the cameras run in") {
		t.Errorf("reid check while the second runs the cameras: %+v", result)
	}
	second.stop()
	if err := <-second.done; err != nil {
		t.Fatal(err)
	}
	if result := checkFailoverGroup(context.Background(), options, store, time.Now()); result.err == nil || !strings.Contains(result.err.Error(), "gave the cameras up") {
		t.Errorf("reid check once both stopped: %+v", result)
	}
	if total, made := stored(), crops(first)+crops(second); total != made {
		t.Errorf("the store holds %d crops; the two processes made %d", total, made)
	}
	claim, err := lease.Read(context.Background(), lease.Dir(filepath.Join(dataDir, "leases")), "ingest-north.lease")
	if err != nil || !claim.Released {
		t.Errorf("the group's lease after both stopped: %+v (%v), want released", claim, err)
	}
}
