package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reid-project/reid/config"
)

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	response, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response.StatusCode, string(body)
}

// TestOpsEndpoints serves the operations listener as the stage processes do and checks what each
// setting exposes, and that it refuses what it must.
func TestOpsEndpoints(t *testing.T) {
	stage := prometheus.NewCounter(prometheus.CounterOpts{Name: "reid_test_stage_total", Help: "A stage's counter."})
	stage.Add(7)
	cases := []struct {
		name          string
		profiling     bool
		wantProfiles  int
		wantInProfile string
	}{
		{name: "metrics and health only", profiling: false, wantProfiles: http.StatusNotFound},
		{name: "with profiling", profiling: true, wantProfiles: http.StatusOK, wantInProfile: "goroutine"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := freeAddr(t)
			stop, err := startOps(context.Background(), config.Ops{Addr: addr, Profiling: c.profiling}, stage)
			if err != nil {
				t.Fatal(err)
			}
			status, body := get(t, "http://"+addr+"/metrics")
			for _, want := range []string{"reid_test_stage_total 7", "go_goroutines ", "process_resident_memory_bytes "} {
				if status != http.StatusOK || !strings.Contains(body, want) {
					t.Errorf("/metrics: %d, lacks %q", status, want)
				}
			}
			if status, body := get(t, "http://"+addr+"/healthz"); status != http.StatusOK || strings.TrimSpace(body) != "ok" {
				t.Errorf("/healthz: %d %q", status, body)
			}
			status, body = get(t, "http://"+addr+"/debug/pprof/")
			if status != c.wantProfiles || !strings.Contains(body, c.wantInProfile) {
				t.Errorf("/debug/pprof/: %d, want %d with %q", status, c.wantProfiles, c.wantInProfile)
			}
			if c.profiling {
				if status, body := get(t, "http://"+addr+"/debug/pprof/heap?debug=1"); status != http.StatusOK || !strings.Contains(body, "heap profile") {
					t.Errorf("/debug/pprof/heap: %d %.80q", status, body)
				}
			}
			stop()
			if _, err := net.Dial("tcp", addr); err == nil {
				t.Error("still listening after stop")
			}
		})
	}
}

func TestOpsRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		name    string
		options config.Ops
		want    string
	}{
		{"profiles beyond loopback", config.Ops{Addr: "0.0.0.0:0", Profiling: true}, "not loopback"},
		{"a port in use", config.Ops{Addr: busy.Addr().String()}, "ops.addr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stop, err := startOps(context.Background(), c.options)
			if err == nil {
				stop()
				t.Fatalf("started on %+v", c.options)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
	// Nothing configured, nothing served.
	stop, err := startOps(context.Background(), config.Ops{})
	if err != nil {
		t.Fatal(err)
	}
	stop()
}
