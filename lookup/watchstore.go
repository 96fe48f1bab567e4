package lookup

// Where watches are kept. On one machine that is a directory of the data dir; at scale, where the
// crop store is a bucket, it is a folder of the bucket, so that a lookup server keeps nothing of
// its own but the audit log: another can become the watch server and find every watch and alert
// there (cropstore.S3.Folder).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/reid-project/reid/internal/atomicfile"
	"github.com/reid-project/reid/internal/lease"
)

// WatchStore keeps the watch files: one JSON file and one query image per watch, and a webhook
// cursor per webhook. Names are plain file names (no '/'). A file is written whole or not at all.
type WatchStore interface {
	// List returns the names of the files kept.
	List(ctx context.Context) ([]string, error)
	// Read returns a file's content; an error wrapping os.ErrNotExist when there is none.
	Read(ctx context.Context, name string) ([]byte, error)
	Write(ctx context.Context, name string, data []byte) error
	// Remove deletes a file; removing one that is not there is no error.
	Remove(ctx context.Context, name string) error
	// Location names the store in logs.
	Location() string
}

// DirWatchStore keeps the watch files in a directory, created when missing.
func DirWatchStore(dir string) (WatchStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lookup: watches: %w", err)
	}
	return dirWatchStore(dir), nil
}

type dirWatchStore string

func (d dirWatchStore) List(context.Context) ([]string, error) {
	entries, err := os.ReadDir(string(d))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, entry := range entries {
		// Temporary files of a write in progress start with a dot.
		if entry.Type().IsRegular() && !strings.HasPrefix(entry.Name(), ".") {
			names = append(names, entry.Name())
		}
	}
	return names, nil
}

func (d dirWatchStore) Read(_ context.Context, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

func (d dirWatchStore) Write(_ context.Context, name string, data []byte) error {
	return atomicfile.Write(filepath.Join(string(d), name), data)
}

func (d dirWatchStore) Remove(_ context.Context, name string) error {
	if err := os.Remove(filepath.Join(string(d), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (d dirWatchStore) Location() string { return string(d) }

// ReadVersion and Swap make the directory a lease.Store, for the election of the watch server.
func (d dirWatchStore) ReadVersion(ctx context.Context, name string) ([]byte, string, error) {
	return lease.Dir(d).ReadVersion(ctx, name)
}

func (d dirWatchStore) Swap(ctx context.Context, name string, data []byte, version string) (string, error) {
	return lease.Dir(d).Swap(ctx, name, data, version)
}

// MoveInWatches copies every watch file of from into to when to holds none yet, and says how many
// it copied: a site whose crop store moves to a bucket takes its watches along at the next start.
// from is left as it was.
func MoveInWatches(ctx context.Context, from, to WatchStore) (int, error) {
	held, err := to.List(ctx)
	if err != nil || len(held) > 0 {
		return 0, err
	}
	names, err := from.List(ctx)
	if err != nil {
		return 0, err
	}
	// An elected watch server's lease names a server of the old store: the bucket starts without.
	names = slices.DeleteFunc(names, func(name string) bool { return name == watchLeaseFile })
	for i, name := range names {
		data, err := from.Read(ctx, name)
		if err == nil {
			err = to.Write(ctx, name, data)
		}
		if err != nil {
			return i, fmt.Errorf("lookup: moving watch file %s from %s to %s: %w", name, from.Location(), to.Location(), err)
		}
	}
	return len(names), nil
}
