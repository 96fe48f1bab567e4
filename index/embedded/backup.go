package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/reid-project/reid/internal/atomicfile"
)

// ErrNoIndex is Backup's answer for a directory that holds no index (yet).
var ErrNoIndex = errors.New("embedded index: no index in the directory")

// BackupResult says what Backup wrote.
type BackupResult struct {
	Versions int
	// Files were copied (Bytes in all); Unchanged files were in to already.
	Files     int
	Unchanged int
	Bytes     int64
	// Attempts is how many times the copy started: more than one when a snapshot replaced files
	// the copy was about to read.
	Attempts int
}

// Backup copies the index kept in from into to while another process may be writing it, without
// its lock: the result opens as the index did at some moment during the copy. It relies on what
// the index never does: a snapshot appears whole (renamed into place) and is not changed after,
// and a log is only appended to, until a newer whole snapshot makes both removable. So each
// gallery's newest snapshot and the logs from it on are a consistent state, the last log's torn
// tail (if any) being dropped when the copy is opened. When a file vanishes during the copy a
// newer snapshot has just replaced it, and the copy starts over. Files in to that the copy does
// not hold are removed, so repeating a backup into one directory keeps it a mirror.
func Backup(ctx context.Context, from, to string) (BackupResult, error) {
	if _, err := os.Stat(filepath.Join(from, metadataName)); errors.Is(err, fs.ErrNotExist) {
		return BackupResult{}, ErrNoIndex
	}
	return backup(ctx, from, to, func(from, to string) (int64, error) { return atomicfile.Copy(from, to, true) })
}

// backup is Backup with the file copy given, so a test can change the index between the listing
// of its files and their copy.
func backup(ctx context.Context, from, to string, copyFile func(from, to string) (int64, error)) (BackupResult, error) {
	const attempts = 10
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		result, err := backupOnce(ctx, from, to, copyFile)
		result.Attempts = attempt
		if !errors.Is(err, fs.ErrNotExist) {
			return result, err
		}
		lastErr = err
	}
	return BackupResult{}, fmt.Errorf("embedded index: backup: files kept changing under the copy (%d attempts): %w", attempts, lastErr)
}

func backupOnce(ctx context.Context, from, to string, copyFile func(from, to string) (int64, error)) (BackupResult, error) {
	var result BackupResult
	data, err := os.ReadFile(filepath.Join(from, metadataName))
	if err != nil {
		return result, err
	}
	var meta metadataFile
	if err := json.Unmarshal(data, &meta); err != nil {
		return result, fmt.Errorf("embedded index: %s is damaged: %w", filepath.Join(from, metadataName), err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return result, err
	}
	keepDirs := map[string]bool{}
	for _, entry := range meta.Versions {
		if err := ctx.Err(); err != nil {
			return result, err
		}
		if entry.Dir == "" || strings.ContainsAny(entry.Dir, `/\`) {
			return result, fmt.Errorf("embedded index: %s: bad version entry %+v", metadataName, entry)
		}
		keepDirs[entry.Dir] = true
		files, unchanged, bytes, err := backupGallery(ctx, filepath.Join(from, entry.Dir), filepath.Join(to, entry.Dir), copyFile)
		if err != nil {
			return result, err
		}
		result.Versions++
		result.Files += files
		result.Unchanged += unchanged
		result.Bytes += bytes
	}
	// The metadata goes last, as the index itself writes it after a gallery's directory exists.
	if err := atomicfile.Write(filepath.Join(to, metadataName), data); err != nil {
		return result, err
	}
	result.Files++
	result.Bytes += int64(len(data))
	entries, err := os.ReadDir(to)
	if err != nil {
		return result, err
	}
	for _, entry := range entries {
		if entry.IsDir() && !keepDirs[entry.Name()] {
			if err := os.RemoveAll(filepath.Join(to, entry.Name())); err != nil {
				return result, err
			}
		}
	}
	return result, nil
}

// backupGallery copies one gallery's newest snapshot and the logs from it on.
func backupGallery(ctx context.Context, from, to string, copyFile func(from, to string) (int64, error)) (files, unchanged int, bytes int64, err error) {
	snapshots, logs, err := galleryFiles(from)
	if err != nil {
		return 0, 0, 0, err
	}
	var names []string
	var base uint64
	if len(snapshots) > 0 {
		base = snapshots[len(snapshots)-1]
		names = append(names, filepath.Base(snapshotPath(from, base)))
	}
	for _, sequence := range logs {
		if sequence >= base {
			names = append(names, filepath.Base(logPath(from, sequence)))
		}
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return 0, 0, 0, err
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return files, unchanged, bytes, err
		}
		// Snapshots never change and logs only grow, so a file of the same name, size and
		// modification time is the same file: a repeated backup copies only what was written since.
		source, err := os.Stat(filepath.Join(from, name))
		if err != nil {
			return files, unchanged, bytes, err
		}
		if copied, err := os.Stat(filepath.Join(to, name)); err == nil && copied.Size() == source.Size() && copied.ModTime().Equal(source.ModTime()) {
			unchanged++
			continue
		}
		written, err := copyFile(filepath.Join(from, name), filepath.Join(to, name))
		if err == nil && written == source.Size() {
			// Only a copy that ended where the stat did may be taken for the file next time.
			err = os.Chtimes(filepath.Join(to, name), source.ModTime(), source.ModTime())
		}
		if err != nil {
			return files, unchanged, bytes, err
		}
		files++
		bytes += written
	}
	existing, err := os.ReadDir(to)
	if err != nil {
		return files, unchanged, bytes, err
	}
	for _, entry := range existing {
		if !slices.Contains(names, entry.Name()) {
			if err := os.Remove(filepath.Join(to, entry.Name())); err != nil {
				return files, unchanged, bytes, err
			}
		}
	}
	return files, unchanged, bytes, nil
}
