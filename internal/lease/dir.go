package lease

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/reid-project/reid/internal/atomicfile"
)

// Dir is a Store in a directory. Its versions are hashes of the files' content, and Swap holds
// an exclusive lock on a file beside them while it compares and writes, so that processes on
// this machine sharing the directory take turns. (A directory on a network file system shared by
// several machines needs a lock that file system honours; a bucket needs none.)
type Dir string

// ReadVersion returns a file with its version.
func (d Dir) ReadVersion(_ context.Context, name string) ([]byte, string, error) {
	data, err := os.ReadFile(filepath.Join(string(d), name))
	if err != nil {
		return nil, "", err
	}
	return data, contentVersion(data), nil
}

// Swap writes a file only if it is still at version ("": only if there is none).
func (d Dir) Swap(_ context.Context, name string, data []byte, version string) (string, error) {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(string(d), ".swap.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lease: locking %s: %w", lock.Name(), err)
	}
	path := filepath.Join(string(d), name)
	current, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if version != "" {
			return "", fmt.Errorf("%w: %s is gone", ErrChanged, name)
		}
	case err != nil:
		return "", err
	case contentVersion(current) != version:
		return "", fmt.Errorf("%w: %s", ErrChanged, name)
	}
	if err := atomicfile.Write(path, data); err != nil {
		return "", err
	}
	return contentVersion(data), nil
}

// Remove deletes a file; a missing one is no error.
func (d Dir) Remove(_ context.Context, name string) error {
	if err := os.Remove(filepath.Join(string(d), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Location names the directory in logs.
func (d Dir) Location() string { return string(d) }

func contentVersion(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:12])
}
