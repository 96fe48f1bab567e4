// Package backup copies what a running reid keeps on one machine into a directory laid out as a
// data dir, so that restoring is pointing data_dir at it (or copying it back). It runs beside the
// processes writing that data, without stopping them: each part is copied in an order that leaves
// it consistent, and repeating a backup into the same directory copies only what changed and
// removes what is gone (pruned or erased crops, deleted watches), so the copy stays a mirror.
//
// The broker's data is not copied: it holds crops in flight, which the archiver puts in the crop
// store within seconds, and consumer offsets that a restored site need not resume from.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/index/embedded"
	"github.com/reid-project/reid/internal/atomicfile"
)

// Sources says where each part lives. An empty path leaves that part out, with Skipped saying why.
type Sources struct {
	// Index is an embedded index's directory.
	Index string
	// Crops is a local crop store's directory.
	Crops string
	// Models is the model registry's directory.
	Models string
	// Watches is the lookup server's watch directory.
	Watches string
	// Validation is the site's validation set, copied under its lock.
	Validation string
	// AuditLog is the audit log; files beside it whose names start with its name (rotated ones)
	// are copied too.
	AuditLog string
	// Skipped gives, per part left out, the reason the report shows.
	Skipped map[string]string
}

// mirrorCopiers is how many files a mirror copies at once.
const mirrorCopiers = 4

// Part is what one part of the backup did.
type Part struct {
	Name string `json:"name"`
	// Skipped, when set, is why the part was not copied.
	Skipped string `json:"skipped,omitempty"`
	// Copied files and their bytes; Unchanged files were already in the backup; Removed files were
	// in the backup but no longer in the source.
	Copied    int           `json:"copied"`
	Bytes     int64         `json:"bytes"`
	Unchanged int           `json:"unchanged"`
	Removed   int           `json:"removed"`
	Took      time.Duration `json:"took_ns"`
}

// Run copies sources into dest, part by part: the index first, then the crops, so that the crops
// of the vectors copied are copied too (the archiver stores a crop within seconds of the embedder
// indexing it; only one still in flight then can be missing), then the models, watches, validation
// set and audit log. It refuses a dest that overlaps a source and a second backup into the same
// dest at once.
func Run(ctx context.Context, sources Sources, dest string) ([]Part, error) {
	dest, err := filepath.Abs(dest)
	if err != nil {
		return nil, err
	}
	for _, source := range []string{sources.Index, sources.Crops, sources.Models, sources.Watches, sources.Validation} {
		if source == "" {
			continue
		}
		absolute, err := filepath.Abs(source)
		if err != nil {
			return nil, err
		}
		if inside(dest, absolute) || inside(absolute, dest) {
			return nil, fmt.Errorf("backup: %s and %s overlap: back up to a directory outside the data", dest, absolute)
		}
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	unlock, err := lockDest(dest)
	if err != nil {
		return nil, err
	}
	defer unlock()

	steps := []struct {
		name, source string
		copy         func(ctx context.Context, source, target string, part *Part) error
	}{
		{"index", sources.Index, copyIndex},
		{"crops", sources.Crops, mirrorPart},
		{"models", sources.Models, mirrorPart},
		{"watches", sources.Watches, mirrorPart},
		{"validation", sources.Validation, copyValidation},
		{"audit", sources.AuditLog, copyAudit},
	}
	var parts []Part
	for _, step := range steps {
		part := Part{Name: step.name}
		if step.source == "" {
			part.Skipped = sources.Skipped[step.name]
			if part.Skipped == "" {
				part.Skipped = "not configured"
			}
			parts = append(parts, part)
			continue
		}
		started := time.Now()
		target := filepath.Join(dest, step.name)
		if step.name == "audit" {
			target = dest
		}
		if err := step.copy(ctx, step.source, target, &part); err != nil {
			return parts, fmt.Errorf("backup: %s: %w", step.name, err)
		}
		part.Took = time.Since(started)
		parts = append(parts, part)
	}
	if sources.Crops != "" {
		// An erasure recorded while the backup ran is in the copy too (erasures.go).
		crops := &parts[slices.IndexFunc(parts, func(part Part) bool { return part.Name == "crops" })]
		if err := copyRecord(sources.Crops, filepath.Join(dest, "crops"), crops); err != nil {
			return parts, err
		}
	}
	// Files are copied without a sync each (a crop store is many small files); one sync of the
	// file system makes them all durable before the backup reports done.
	if err := syncFileSystem(dest); err != nil {
		return parts, fmt.Errorf("backup: sync %s: %w", dest, err)
	}
	return parts, nil
}

func syncFileSystem(path string) error {
	directory, err := os.Open(path)
	if err != nil {
		return err
	}
	defer directory.Close()
	return unix.Syncfs(int(directory.Fd()))
}

func copyIndex(ctx context.Context, source, target string, part *Part) error {
	result, err := embedded.Backup(ctx, source, target)
	if errors.Is(err, embedded.ErrNoIndex) {
		part.Skipped = "no index yet"
		return nil
	}
	part.Copied, part.Unchanged, part.Bytes = result.Files, result.Unchanged, result.Bytes
	return err
}

func mirrorPart(ctx context.Context, source, target string, part *Part) error {
	if _, err := os.Stat(source); errors.Is(err, fs.ErrNotExist) {
		part.Skipped = "nothing there yet"
		return nil
	}
	return mirror(ctx, source, target, part)
}

// copyValidation copies the set under its lock, so no add or removal is half in the copy.
func copyValidation(ctx context.Context, source, target string, part *Part) error {
	if _, err := os.Stat(source); errors.Is(err, fs.ErrNotExist) {
		part.Skipped = "nothing there yet"
		return nil
	}
	unlock, err := eval.LockLabelledSet(source)
	if err != nil {
		return err
	}
	defer unlock()
	return mirror(ctx, source, target, part)
}

// copyAudit copies the audit log and its rotated files into target's top level. An append-only
// log is copied whole when its size changed; its last line may be cut off mid-write, which
// `reid audit` reports and skips.
func copyAudit(ctx context.Context, source, target string, part *Part) error {
	names, err := filepath.Glob(filepath.Join(filepath.Dir(source), globEscape(filepath.Base(source))+"*"))
	if err != nil {
		return err
	}
	if len(names) == 0 {
		part.Skipped = "no audit log yet"
		return nil
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := os.Stat(name)
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if err := copyIfChanged(name, filepath.Join(target, filepath.Base(name)), info, part); err != nil {
			return err
		}
	}
	return nil
}

// mirror makes target hold the regular files under source: a file is copied when target lacks it
// or holds it with another size or modification time (a crop never changes under its name, so
// that is exact for crops), and files and directories target holds that source lacks are removed.
// Lock files and dot files (other writers' temporaries) are neither copied nor removed. It goes a
// directory at a time, comparing the two listings, so its memory follows the largest directory
// (a camera's day of crops), not the store. The walk hands files to a few copiers: a crop store is
// many small files, and each copy waits on the disk.
func mirror(ctx context.Context, source, target string, part *Part) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type job struct {
		path, destination string
		info              fs.FileInfo
	}
	jobs := make(chan job, 256)
	var (
		copiers sync.WaitGroup
		mu      sync.Mutex
	)
	for range mirrorCopiers {
		copiers.Go(func() {
			var tally Part
			for job := range jobs {
				if ctx.Err() != nil {
					continue // drain: the walk stops at its next step
				}
				err := copyIfChanged(job.path, job.destination, job.info, &tally)
				if err != nil && !(errors.Is(err, fs.ErrNotExist) && isMissing(job.path)) { // a file removed since its listing is skipped
					cancel(err)
				}
			}
			mu.Lock()
			part.Copied += tally.Copied
			part.Bytes += tally.Bytes
			part.Unchanged += tally.Unchanged
			mu.Unlock()
		})
	}
	var walk func(from, to string) error
	walk = func(from, to string) error {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		entries, err := os.ReadDir(from)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking: pruned or erased, so not in the copy either
		}
		if err != nil {
			return err
		}
		if err := os.MkdirAll(to, 0o700); err != nil {
			return err
		}
		if err := removeStale(to, entries, part); err != nil {
			return err
		}
		for _, entry := range entries {
			if ignored(entry.Name()) {
				continue
			}
			path, destination := filepath.Join(from, entry.Name()), filepath.Join(to, entry.Name())
			if entry.IsDir() {
				if err := walk(path, destination); err != nil {
					return err
				}
				continue
			}
			if !entry.Type().IsRegular() {
				continue
			}
			info, err := entry.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			select {
			case jobs <- job{path, destination, info}:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	}
	walkErr := walk(source, target)
	close(jobs)
	copiers.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return walkErr
}

// removeStale removes what the target directory to holds that the source directory, listed as
// entries, does not (a file where the source has a directory, or the other way round, too).
func removeStale(to string, entries []fs.DirEntry, part *Part) error {
	if filepath.Base(to) == cropstore.ErasuresFolder {
		return nil // the record of erasures only grows, and may be ahead of its source (erasures.go)
	}
	existing, err := os.ReadDir(to)
	if err != nil {
		return err
	}
	kinds := make(map[string]bool, len(entries)) // name -> is a directory
	for _, entry := range entries {
		kinds[entry.Name()] = entry.IsDir()
	}
	for _, entry := range existing {
		isDir, inSource := kinds[entry.Name()]
		if ignored(entry.Name()) || (inSource && isDir == entry.IsDir()) {
			continue
		}
		path := filepath.Join(to, entry.Name())
		if entry.IsDir() {
			filepath.WalkDir(path, func(_ string, inner fs.DirEntry, err error) error {
				if err == nil && !inner.IsDir() {
					part.Removed++
				}
				return nil
			})
			err = os.RemoveAll(path)
		} else {
			part.Removed++
			err = os.Remove(path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyIfChanged copies source to destination unless destination has its size and modification
// time already, and then gives the copy source's modification time for the next comparison.
func copyIfChanged(source, destination string, info fs.FileInfo, part *Part) error {
	if existing, err := os.Stat(destination); err == nil && existing.Size() == info.Size() && existing.ModTime().Equal(info.ModTime()) {
		part.Unchanged++
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(destination), 0o700); err != nil {
		return err
	}
	written, err := atomicfile.Copy(source, destination, false)
	if err != nil {
		return err
	}
	part.Copied++
	part.Bytes += written
	return os.Chtimes(destination, info.ModTime(), info.ModTime())
}

func ignored(name string) bool {
	return name == "LOCK" || strings.HasPrefix(name, ".")
}

func isMissing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// inside says whether path is directory or under it.
func inside(path, directory string) bool {
	relative, err := filepath.Rel(directory, path)
	return err == nil && relative != ".." && !strings.HasPrefix(relative, ".."+string(filepath.Separator))
}

func globEscape(name string) string {
	replacer := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return replacer.Replace(name)
}

// lockDest holds an advisory lock on dest until the returned function is called: two backups into
// one directory would remove each other's files.
func lockDest(dest string) (unlock func(), err error) {
	file, err := os.OpenFile(filepath.Join(dest, ".backup-lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		file.Close()
		return nil, fmt.Errorf("backup: another backup into %s is running", dest)
	}
	return func() { file.Close() }, nil
}
