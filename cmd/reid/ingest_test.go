package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/internal/testassets"
)

func runIngestCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestIngestAndContactSheet(t *testing.T) {
	shared := testassets.SharedDir()
	video := testassets.Path(t, "video/vtest.avi")
	data := t.TempDir()
	out, err := runIngestCLI(t, "ingest", "--shared-dir", shared, "--data-dir", data,
		"--source", video, "--camera", "cam1", "--max-frames", "40", "--json")
	if err != nil {
		t.Fatalf("ingest: %v\n%s", err, out)
	}
	var summary struct {
		Frames, Detections, Crops, Tracks int64
		Seconds                           float64
	}
	if err := json.Unmarshal([]byte(out), &summary); err != nil {
		t.Fatalf("summary is not one JSON object: %v\n%s", err, out)
	}
	if summary.Frames != 40 || summary.Detections < 40*3 || summary.Crops == 0 || summary.Tracks == 0 || summary.Seconds <= 0 {
		t.Errorf("summary %+v", summary)
	}
	matches, _ := filepath.Glob(filepath.Join(data, "crops", "cam1", "*", "*.jpg"))
	if int64(len(matches)) != summary.Crops {
		t.Errorf("%d crop files for %d crops", len(matches), summary.Crops)
	}

	// A crop's metadata, by id from the store and from a copy of its file.
	if len(matches) > 0 {
		copied := filepath.Join(t.TempDir(), "copy.jpg")
		content, err := os.ReadFile(matches[0])
		if err != nil || os.WriteFile(copied, content, 0o644) != nil {
			t.Fatal(err)
		}
		id := strings.TrimSuffix(filepath.Base(matches[0]), ".jpg")
		out, err := runIngestCLI(t, "crops", "show", "--data-dir", data, id, copied)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if err != nil || len(lines) != 2 || lines[0] != lines[1] || !strings.Contains(lines[0], `"id":"`+id+`"`) || !strings.Contains(lines[0], `"camera":"cam1"`) {
			t.Errorf("crops show: %v\n%s", err, out)
		}
		if _, err := runIngestCLI(t, "crops", "show", "--data-dir", data, foreignJPEG(t)); err == nil || !strings.Contains(err.Error(), "no crop metadata") {
			t.Errorf("crops show of a JPEG that is no crop: %v", err)
		}
	}

	sheet := filepath.Join(t.TempDir(), "sheet.png")
	out, err = runIngestCLI(t, "crops", "sheet", "--data-dir", data, "--camera", "cam1", "--out", sheet, "--max", "12", "--columns", "4")
	if err != nil {
		t.Fatalf("crops sheet: %v\n%s", err, out)
	}
	image := gocv.IMRead(sheet, gocv.IMReadColor)
	defer image.Close()
	if want := min(12, int(summary.Crops)); image.Cols() != 4*sheetCellWidth || image.Rows() != (want+3)/4*(sheetCellHeight+sheetLabel) {
		t.Errorf("sheet is %dx%d for %d crops", image.Cols(), image.Rows(), want)
	}

	if _, err := runIngestCLI(t, "crops", "sheet", "--data-dir", data, "--camera", "nobody", "--out", sheet); err == nil || !strings.Contains(err.Error(), "no crops") {
		t.Errorf("sheet of an unknown camera: %v", err)
	}
	if _, err := runIngestCLI(t, "ingest", "--data-dir", data, "--source", video, "--camera", "../x"); err == nil || !strings.Contains(err.Error(), "cameras[0].id") {
		t.Errorf("bad camera id: %v", err)
	}
	if _, err := runIngestCLI(t, "ingest", "--data-dir", data); err == nil {
		t.Error("ingest with no source and no cameras: no error")
	}
	// Shared assets elsewhere than --shared-dir: the error says which settings find them.
	_, err = runIngestCLI(t, "ingest", "--shared-dir", t.TempDir(), "--data-dir", data, "--source", video, "--camera", "cam1", "--max-frames", "1")
	if err == nil || !strings.Contains(err.Error(), "detector.models_dir") || !strings.Contains(err.Error(), "REID_SHARED_DIR") {
		t.Errorf("ingest without detector models: %v", err)
	}
}

// foreignJPEG writes a JPEG that reid did not store, and returns its path.
func foreignJPEG(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "other.jpg")
	picture := gocv.NewMatWithSize(32, 16, gocv.MatTypeCV8UC3)
	defer picture.Close()
	if !gocv.IMWrite(path, picture) {
		t.Fatal("cannot write a JPEG")
	}
	return path
}
