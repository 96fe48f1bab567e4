package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrLocked is returned by Open when another Index (in this or another process) has the
// directory open: two writers would replay, compact and delete each other's files.
var ErrLocked = errors.New("embedded index: in use")

// lockDir takes an exclusive advisory lock on dir/LOCK. The kernel drops it when the process
// dies, so a killed process never leaves the index locked.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("embedded index: %w", err)
	}
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		file.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is open in another reid process (reid run or reid serve?); query that process's lookup API, or stop it first", ErrLocked, dir)
		}
		return nil, fmt.Errorf("embedded index: lock %s: %w", path, err)
	}
	return file, nil
}
