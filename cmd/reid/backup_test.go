package main

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reid-project/reid/backup"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/lookup"
)

// checkBackupAndSearchCopy backs a pipeline's data dir up with `reid backup` and searches the copy as a
// restored site would: the same crop must find the same sightings with the same scores, through
// the copied model, index and crops. A second backup copies no crop again.
func checkBackupAndSearchCopy(t *testing.T, dataDir string, store cropStore, queryID string) (backupDir string) {
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
	queryPath := cropImageFile(t, store, queryID)
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
	// reid check and /metrics report the backup from the status it leaves in the data dir; a
	// failed one (here refused: its directory is inside the data) fails the check and is counted.
	if result, found := checkBackup(dataDir, filepath.Join(dataDir, "crops"), time.Now()); !found || result.err != nil || !strings.Contains(result.detail, dest) {
		t.Errorf("reid check after a backup: %+v (found %v)", result, found)
	}
	if out, err := runReid(t, "--data-dir", dataDir, "backup", filepath.Join(dataDir, "crops", "backup")); err == nil {
		t.Fatalf("a backup into the crop store: no error\n%s", out)
	}
	if result, _ := checkBackup(dataDir, filepath.Join(dataDir, "crops"), time.Now()); result.err == nil || !strings.Contains(result.err.Error(), "overlap") || !strings.Contains(result.err.Error(), "last success") {
		t.Errorf("reid check after a failed backup: %+v", result)
	}
	backupGauges := func() (success, failed float64) {
		t.Helper()
		registry := prometheus.NewRegistry()
		registry.MustRegister(&pipelineMetrics{dataDir: dataDir})
		families, err := registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, family := range families {
			switch family.GetName() {
			case "reid_backup_last_success_timestamp_seconds":
				success = family.GetMetric()[0].GetGauge().GetValue()
			case "reid_backup_last_run_failed":
				failed = family.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return success, failed
	}
	if success, failed := backupGauges(); failed != 1 || time.Since(time.Unix(int64(success), 0)) > time.Hour {
		t.Errorf("after a failed backup /metrics says last success %v, failed %v", success, failed)
	}
	again := report()
	if crops := again["crops"]; crops.Copied != 0 || crops.Unchanged != first["crops"].Copied {
		t.Errorf("second backup of unchanged crops: %+v, first %+v", crops, first["crops"])
	}
	if _, failed := backupGauges(); failed != 0 {
		t.Errorf("after a good backup /metrics still says the last one failed")
	}
	return dest
}
