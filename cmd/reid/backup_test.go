package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reid-project/reid/backup"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/lookup"
)

// checkBackup backs a pipeline's data dir up with `reid backup` and searches the copy as a
// restored site would: the same crop must find the same sightings with the same scores, through
// the copied model, index and crops. A second backup copies no crop again.
func checkBackup(t *testing.T, dataDir string, store cropStore, queryID string) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "backup")
	report := func() map[string]backup.Part {
		t.Helper()
		out, err := runReid(t, "--data-dir", dataDir, "backup", dest, "--json")
		if err != nil {
			t.Fatalf("reid backup: %v\n%s", err, out)
		}
		var decoded struct {
			Parts []backup.Part `json:"parts"`
		}
		if err := json.Unmarshal([]byte(out[max(strings.Index(out, "{"), 0):]), &decoded); err != nil {
			t.Fatalf("reid backup output: %v\n%s", err, out)
		}
		parts := map[string]backup.Part{}
		for _, part := range decoded.Parts {
			parts[part.Name] = part
		}
		return parts
	}
	first := report()
	for _, name := range []string{"index", "crops", "models"} {
		if part := first[name]; part.Copied == 0 || part.Skipped != "" {
			t.Errorf("backup part %s: %+v, want files copied", name, part)
		}
	}
	jpegBytes, err := store.Image(context.Background(), queryID)
	if err != nil {
		t.Fatal(err)
	}
	queryPath := filepath.Join(t.TempDir(), "query.jpg")
	if err := os.WriteFile(queryPath, jpegBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	search := func(dir string) []lookup.MatchJSON {
		t.Helper()
		return searchJSON(t, "--data-dir", dir, "search", "--image", queryPath, "--k", "8", "--json").Matches
	}
	original, restored := search(dataDir), search(dest)
	if len(original) == 0 || len(restored) != len(original) {
		t.Fatalf("search of the backup found %d sightings, the data dir %d", len(restored), len(original))
	}
	for i := range original {
		if restored[i].CropID != original[i].CropID || math.Abs(float64(restored[i].Score-original[i].Score)) > 1e-4 {
			t.Errorf("match %d: backup %s (%.4f), data dir %s (%.4f)", i, restored[i].CropID, restored[i].Score, original[i].CropID, original[i].Score)
		}
	}
	copiedCrops, err := cropstore.OpenLocal(filepath.Join(dest, "crops"))
	if err != nil {
		t.Fatal(err)
	}
	for _, match := range restored {
		if _, err := copiedCrops.Image(context.Background(), match.CropID); err != nil {
			t.Errorf("match %s's crop in the backup: %v", match.CropID, err)
		}
	}
	again := report()
	if crops := again["crops"]; crops.Copied != 0 || crops.Unchanged != first["crops"].Copied {
		t.Errorf("second backup of unchanged crops: %+v, first %+v", crops, first["crops"])
	}
}
