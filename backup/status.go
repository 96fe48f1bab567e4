package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/reid-project/reid/internal/atomicfile"
)

// StatusFile is the file in the data dir that says how the last backup went, so that the
// processes running there can report it (/metrics, reid check) without knowing where backups go.
const StatusFile = "backup-status.json"

// Status is what the last backup of a data dir did.
type Status struct {
	Finished time.Time `json:"finished"`
	Dest     string    `json:"dest"`
	// Error is why the last backup failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
	Parts []Part `json:"parts"`
	// LastSuccess and LastSuccessDest are the newest backup that succeeded, kept across failures.
	LastSuccess     time.Time `json:"last_success"`
	LastSuccessDest string    `json:"last_success_dest,omitempty"`
}

// ReadStatus returns the data dir's backup status; found is false when no backup has recorded one.
func ReadStatus(dataDir string) (status Status, found bool, err error) {
	data, err := os.ReadFile(filepath.Join(dataDir, StatusFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, fmt.Errorf("backup status: %w", err)
	}
	if err := json.Unmarshal(data, &status); err != nil {
		return Status{}, false, fmt.Errorf("backup status %s: %w", filepath.Join(dataDir, StatusFile), err)
	}
	return status, true, nil
}

// RecordStatus writes how a backup into dest that finished at finished went (runErr nil: it
// succeeded), keeping the last success when this one failed.
func RecordStatus(dataDir, dest string, finished time.Time, parts []Part, runErr error) error {
	previous, _, err := ReadStatus(dataDir)
	if err != nil {
		previous = Status{} // a damaged status is replaced, not kept
	}
	status := Status{Finished: finished, Dest: dest, Parts: parts, LastSuccess: previous.LastSuccess, LastSuccessDest: previous.LastSuccessDest}
	if runErr != nil {
		status.Error = runErr.Error()
	} else {
		status.LastSuccess, status.LastSuccessDest = finished, dest
	}
	data, err := json.MarshalIndent(status, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dataDir, StatusFile), append(data, '\n')); err != nil {
		return fmt.Errorf("backup status: %w", err)
	}
	return nil
}
