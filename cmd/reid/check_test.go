package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reid-project/reid/internal/testassets"
)

// TestCheckCommand checks a site whose cameras all work, and one with a missing file and an
// unreachable RTSP camera: each part gets its own line, failures fail the command, and the RTSP
// password is never printed.
func TestCheckCommand(t *testing.T) {
	dataDir := pipelineFixture(t)
	video := testassets.Path(t, "video/vtest.avi")
	cases := []struct {
		name    string
		cameras string
		// lookupAddr, when set, replaces the fixture's loopback lookup address (no API keys).
		lookupAddr string
		ok         []string
		fail       []string
	}{
		{"working", "  - id: gate\n    source: " + video + "\n", "",
			[]string{"data dir", "crop store", "detector yolo-fastest", "camera gate", "model", "index embedded", "broker embedded", "lookup "}, nil},
		{"broken cameras", "  - id: gate\n    source: " + video + "\n  - id: missing\n    source: /nonexistent/gate.mp4\n" +
			"  - id: door\n    source: rtsp://admin:s3cret@127.0.0.1:1/stream\n", "",
			[]string{"camera gate", "model"}, []string{"camera missing", "camera door"}},
		{"no cameras", "", "", []string{"data dir", "model"}, []string{"cameras"}},
		{"lookup open to all", "  - id: gate\n    source: " + video + "\n", "0.0.0.0:8080",
			[]string{"camera gate"}, []string{"lookup 0.0.0.0:8080"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.lookupAddr != "" {
				t.Setenv("REID_LOOKUP_ADDR", c.lookupAddr)
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
	// Detector models elsewhere than --shared-dir: the line says which settings find them.
	configPath := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(configPath, []byte("cameras:\n  - id: gate\n    source: "+video+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runReid(t, "--config", configPath, "--data-dir", dataDir, "--shared-dir", t.TempDir(), "check")
	if err == nil || !strings.Contains(out, "FAIL  detector yolo-fastest") || !strings.Contains(out, "REID_SHARED_DIR") {
		t.Errorf("check without detector models: %v\n%s", err, out)
	}
}
