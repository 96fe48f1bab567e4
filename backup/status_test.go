package backup

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRecordStatus: a success is recorded as the last success; a failure after it keeps that and
// says why; a damaged status file is replaced by the next backup's.
func TestRecordStatus(t *testing.T) {
	dataDir := t.TempDir()
	if _, found, err := ReadStatus(dataDir); found || err != nil {
		t.Fatalf("before any backup: found %v, %v", found, err)
	}
	monday := time.Date(2026, 11, 23, 3, 30, 0, 0, time.UTC)
	steps := []struct {
		name        string
		finished    time.Time
		dest        string
		runErr      error
		damageFirst bool
		wantError   string
		wantSuccess time.Time
		wantDest    string
	}{
		{"first success", monday, "/backups/Mon", nil, false, "", monday, "/backups/Mon"},
		{"a failure keeps the last success", monday.Add(24 * time.Hour), "/backups/Tue", errors.New("backup: crops: no space left on device"), false,
			"backup: crops: no space left on device", monday, "/backups/Mon"},
		{"the next success", monday.Add(48 * time.Hour), "/backups/Wed", nil, false, "", monday.Add(48 * time.Hour), "/backups/Wed"},
		{"a damaged status is replaced", monday.Add(72 * time.Hour), "/backups/Thu", errors.New("refused"), true, "refused", time.Time{}, ""},
	}
	for _, step := range steps {
		if step.damageFirst {
			if err := os.WriteFile(filepath.Join(dataDir, StatusFile), []byte("{not json"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, _, err := ReadStatus(dataDir); err == nil {
				t.Errorf("%s: a damaged status file read without error", step.name)
			}
		}
		if err := RecordStatus(dataDir, step.dest, step.finished, []Part{{Name: "crops", Copied: 3}}, step.runErr); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		status, found, err := ReadStatus(dataDir)
		if err != nil || !found {
			t.Fatalf("%s: found %v, %v", step.name, found, err)
		}
		if status.Error != step.wantError || !status.LastSuccess.Equal(step.wantSuccess) || status.LastSuccessDest != step.wantDest ||
			!status.Finished.Equal(step.finished) || status.Dest != step.dest || len(status.Parts) != 1 {
			t.Errorf("%s: status %+v", step.name, status)
		}
	}
}
