package backup

// The crop store's record of erasures (cropstore.ErasuresFolder) is what keeps an erased person
// erased after a restore: a lookup server erases again, as it starts, whatever the record names.
// A backup copies the record with the crops, but an erasure made after the newest backup would be
// in no backup's record, and a data dir lost and restored from it would bring the person back. So
// the record is kept current in the newest backup between backups: the lookup server copies it
// there after each erasure (CopyErasures), a backup copies it once more as its last step (an
// erasure made while it ran), and a mirror never removes a record file from a backup, since the
// record only grows.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/reid-project/reid/cropstore"
)

// CopyErasures copies into the newest backup of dataDir (backup-status.json's last success) the
// erasure records of the local crop store in cropsDir that the backup lacks, synced, and says how
// many and where. With no backup yet it does nothing. A newest backup whose crops are not there
// (its disk unmounted) is an error: the erasures are then in no backup until the next one.
func CopyErasures(dataDir, cropsDir string) (copied int, dest string, err error) {
	dest, missing, err := missingErasures(dataDir, cropsDir)
	if err != nil || len(missing) == 0 {
		return 0, dest, err
	}
	var part Part
	target := filepath.Join(dest, "crops")
	if err := copyRecord(cropsDir, target, &part); err != nil {
		return part.Copied, dest, err
	}
	if err := syncFileSystem(target); err != nil {
		return part.Copied, dest, fmt.Errorf("backup: sync %s: %w", target, err)
	}
	return part.Copied, dest, nil
}

// copyRecord copies the erasure records of the crop store in cropsDir into the crop store copy in
// target that lacks them, without a sync.
func copyRecord(cropsDir, target string, part *Part) error {
	names, err := recordFiles(filepath.Join(cropsDir, cropstore.ErasuresFolder))
	if err != nil {
		return err
	}
	for name := range names {
		source := filepath.Join(cropsDir, cropstore.ErasuresFolder, name)
		info, err := os.Stat(source)
		if err == nil {
			err = copyIfChanged(source, filepath.Join(target, cropstore.ErasuresFolder, name), info, part)
		}
		if err != nil {
			return fmt.Errorf("backup: copying erasure %s into %s: %w", name, target, err)
		}
	}
	return nil
}

// MissingErasures counts the erasure records of the crop store in cropsDir that the newest backup
// of dataDir lacks; dest is that backup ("" with none yet).
func MissingErasures(dataDir, cropsDir string) (missing int, dest string, err error) {
	dest, names, err := missingErasures(dataDir, cropsDir)
	return len(names), dest, err
}

func missingErasures(dataDir, cropsDir string) (dest string, missing []string, err error) {
	status, found, err := ReadStatus(dataDir)
	if err != nil || !found || status.LastSuccessDest == "" {
		return "", nil, err
	}
	dest = status.LastSuccessDest
	if _, err := os.Stat(filepath.Join(dest, "crops")); err != nil {
		return dest, nil, fmt.Errorf("backup: the newest backup's crops (%s) cannot be read (is its disk mounted?): %w", filepath.Join(dest, "crops"), err)
	}
	recorded, err := recordFiles(filepath.Join(cropsDir, cropstore.ErasuresFolder))
	if err != nil {
		return dest, nil, err
	}
	copied, err := recordFiles(filepath.Join(dest, "crops", cropstore.ErasuresFolder))
	if err != nil {
		return dest, nil, err
	}
	for name := range recorded {
		if !copied[name] {
			missing = append(missing, name)
		}
	}
	return dest, missing, nil
}

// recordFiles lists the erasure files of a record directory (none when it does not exist).
func recordFiles(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: record of erasures: %w", err)
	}
	names := make(map[string]bool, len(entries))
	for _, entry := range entries {
		if entry.Type().IsRegular() && !ignored(entry.Name()) {
			names[entry.Name()] = true
		}
	}
	return names, nil
}
