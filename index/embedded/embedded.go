// Package embedded is the single-machine vector index: every gallery in memory, persisted under
// one directory (by default <data_dir>/index) as a write-ahead log plus periodic snapshots.
//
// Durability: an Upsert, Delete or DeleteBefore is appended to its version's log as one
// checksummed record, and, with SyncWrites, fsynced before it returns; concurrent writers share
// fsyncs (group commit). On open the newest snapshot is loaded and the logs after it replayed; a
// record torn by a crash is dropped (it was never acknowledged). When a log outgrows the last
// snapshot a background snapshot replaces both, so a restart reads about one snapshot's worth.
//
// Search: exact search scans contiguous blocks of vectors, float32 or (Precision "float16")
// binary16, with an AVX2 kernel; in "hnsw" mode an HNSW graph answers instead, and is saved in the
// snapshot so a restart does not rebuild it. Filters are applied during the scan or graph walk.
// Files hold float32 whatever the precision in memory (snapshots of binary16 galleries hold the
// rounded values).
package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/index"
)

// Options configure an embedded index.
type Options struct {
	// Mode is "exact" (default) or "hnsw".
	Mode string
	// Precision is how vectors are kept in memory: "float32" (the default here) or "float16":
	// half the memory, exact search about twice as fast (it reads half the bytes), scores within
	// 1e-4 of float32's. reid's configuration defaults to float16. Files hold float32 either way.
	Precision string
	// HNSWM, EfConstruction and EfSearch are the graph's parameters (defaults 16, 200, 128).
	HNSWM, EfConstruction, EfSearch int
	// SyncWrites fsyncs the log before a write returns. Without it a write survives the process
	// being killed but not the machine losing power.
	SyncWrites bool
	// SnapshotBytes is the log size that starts a snapshot; the log must also outgrow the last
	// snapshot, so that snapshotting costs amortised O(1) per write. Default 256 MiB.
	SnapshotBytes int64
	// ExactBelow answers galleries with fewer slots by exact search even in hnsw mode (a scan of a
	// few thousand vectors beats a graph walk). Default 4096; negative means never.
	ExactBelow int
	// Logger receives recovery and snapshot messages. Default slog.Default().
	Logger *slog.Logger
}

// OptionsFrom maps the configuration's embedded section to Options.
func OptionsFrom(c config.Embedded) Options {
	return Options{Mode: c.Mode, Precision: c.Precision, HNSWM: c.HNSWM, EfConstruction: c.EfConstruction, EfSearch: c.EfSearch, SyncWrites: c.SyncWrites}
}

func (o *Options) setDefaults() error {
	if o.Mode == "" {
		o.Mode = "exact"
	}
	if o.Mode != "exact" && o.Mode != "hnsw" {
		return fmt.Errorf("embedded index: mode must be exact or hnsw, not %q", o.Mode)
	}
	if o.Precision == "" {
		o.Precision = "float32"
	}
	if o.Precision != "float32" && o.Precision != "float16" {
		return fmt.Errorf("embedded index: precision must be float32 or float16, not %q", o.Precision)
	}
	if o.HNSWM == 0 {
		o.HNSWM = 16
	}
	if o.EfConstruction == 0 {
		o.EfConstruction = 200
	}
	if o.EfSearch == 0 {
		o.EfSearch = 128
	}
	if o.HNSWM < 2 || o.HNSWM > 100 || o.EfConstruction < 1 || o.EfSearch < 1 {
		return fmt.Errorf("embedded index: bad HNSW parameters m=%d ef_construction=%d ef_search=%d", o.HNSWM, o.EfConstruction, o.EfSearch)
	}
	if o.SnapshotBytes == 0 {
		o.SnapshotBytes = 256 << 20
	}
	if o.ExactBelow == 0 {
		o.ExactBelow = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("embedded index: closed")

// Index is the embedded backend. It is safe for concurrent use.
type Index struct {
	dir     string
	options Options
	logger  *slog.Logger

	// mu guards the version table, the active name and the metadata file.
	mu       sync.RWMutex
	versions map[string]*version
	active   string
	nextDir  int
	closed   bool

	snapshots chan *version
	stop      chan struct{}
	done      sync.WaitGroup
	// lock holds the directory's advisory lock until Close.
	lock *os.File
}

var _ index.Index = (*Index)(nil)

// version is one gallery with its log.
type version struct {
	name string
	dim  int
	dir  string

	// mu guards gallery and dropped: searches share it, writes and drops hold it alone.
	mu      sync.RWMutex
	gallery *gallery
	dropped bool
	// failed, once set, refuses further writes: a failed fsync, or an append whose partial frame
	// could not be cut off, leaves the log's tail unknown, and acknowledging later writes would
	// hide that. An append that failed cleanly (a full disk) does not set it.
	failed error

	log          atomic.Pointer[wal]
	sequence     uint64 // of the newest snapshot and current log
	snapshotSize atomic.Int64
	snapshotting atomic.Bool
}

type metadataFile struct {
	Versions []metadataVersion `json:"versions"`
	Active   string            `json:"active"`
	NextDir  int               `json:"next_dir"`
}

type metadataVersion struct {
	Name string `json:"name"`
	Dim  int    `json:"dim"`
	Dir  string `json:"dir"`
}

const metadataName = "versions.json"

// Open opens (or creates) the index kept in dir.
func Open(dir string, options Options) (*Index, error) {
	if err := options.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded index: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	ix, err := open(dir, options)
	if err != nil {
		lock.Close()
		return nil, err
	}
	ix.lock = lock
	return ix, nil
}

func open(dir string, options Options) (*Index, error) {
	ix := &Index{
		dir:       dir,
		options:   options,
		logger:    options.Logger.With("component", "index"),
		versions:  map[string]*version{},
		snapshots: make(chan *version, 64),
		stop:      make(chan struct{}),
	}
	data, err := os.ReadFile(filepath.Join(dir, metadataName))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("embedded index: %w", err)
	default:
		var meta metadataFile
		if err := json.Unmarshal(data, &meta); err != nil {
			return nil, fmt.Errorf("embedded index: %s is damaged: %w", filepath.Join(dir, metadataName), err)
		}
		ix.nextDir, ix.active = meta.NextDir, meta.Active
		for _, entry := range meta.Versions {
			if entry.Dim < 1 || entry.Dir == "" || strings.ContainsAny(entry.Dir, `/\`) {
				ix.closeVersions()
				return nil, fmt.Errorf("embedded index: %s: bad version entry %+v", metadataName, entry)
			}
			path := filepath.Join(dir, entry.Dir)
			if _, err := os.Stat(path); err != nil {
				// Never start a named gallery empty: its files being gone is data loss to report.
				ix.closeVersions()
				return nil, fmt.Errorf("embedded index: version %q: %w", entry.Name, err)
			}
			v, err := ix.openVersion(entry.Name, entry.Dim, path)
			if err != nil {
				ix.closeVersions()
				return nil, fmt.Errorf("embedded index: version %q: %w", entry.Name, err)
			}
			ix.versions[entry.Name] = v
		}
		if ix.active != "" && ix.versions[ix.active] == nil {
			ix.closeVersions()
			return nil, fmt.Errorf("embedded index: active version %q has no gallery", ix.active)
		}
	}
	ix.removeOrphans()
	ix.done.Add(1)
	go ix.snapshotLoop()
	return ix, nil
}

// removeOrphans deletes version directories the metadata does not name: left by a crash between
// making a directory and recording it, or between dropping a version and deleting its files.
func (ix *Index) removeOrphans() {
	entries, err := os.ReadDir(ix.dir)
	if err != nil {
		return
	}
	known := map[string]bool{}
	for _, v := range ix.versions {
		known[filepath.Base(v.dir)] = true
	}
	for _, entry := range entries {
		if entry.IsDir() && strings.HasPrefix(entry.Name(), "v") && !known[entry.Name()] {
			ix.logger.Info("removing orphaned gallery directory", "dir", entry.Name())
			os.RemoveAll(filepath.Join(ix.dir, entry.Name()))
		}
	}
}

func (ix *Index) graphOptions() *hnswOptions {
	if ix.options.Mode != "hnsw" {
		return nil
	}
	return &hnswOptions{m: ix.options.HNSWM, efConstruction: ix.options.EfConstruction, efSearch: ix.options.EfSearch}
}

func snapshotPath(dir string, sequence uint64) string {
	return filepath.Join(dir, fmt.Sprintf("snapshot-%016x.snap", sequence))
}

func logPath(dir string, sequence uint64) string {
	return filepath.Join(dir, fmt.Sprintf("log-%016x.wal", sequence))
}

// galleryFiles returns the sequence numbers of the whole snapshots and of the logs in a gallery's
// directory, each in ascending order.
func galleryFiles(dir string) (snapshots, logs []uint64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, entry := range entries {
		var sequence uint64
		if _, err := fmt.Sscanf(entry.Name(), "snapshot-%016x.snap", &sequence); err == nil && !strings.HasSuffix(entry.Name(), ".tmp") {
			snapshots = append(snapshots, sequence)
		} else if _, err := fmt.Sscanf(entry.Name(), "log-%016x.wal", &sequence); err == nil {
			logs = append(logs, sequence)
		}
	}
	slices.Sort(snapshots)
	slices.Sort(logs)
	return snapshots, logs, nil
}

// openVersion loads the newest snapshot, replays the logs written after it and opens the last.
func (ix *Index) openVersion(name string, dim int, dir string) (*version, error) {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	v := &version{name: name, dim: dim, dir: dir, gallery: newGallery(dim, ix.options.Precision == "float16", ix.graphOptions())}
	snapshots, logs, err := galleryFiles(dir)
	if err != nil {
		return nil, err
	}
	graphLoaded := false
	if len(snapshots) > 0 {
		v.sequence = snapshots[len(snapshots)-1]
		path := snapshotPath(dir, v.sequence)
		if graphLoaded, err = readSnapshot(path, v.gallery); err != nil {
			return nil, err
		}
		if info, err := os.Stat(path); err == nil {
			v.snapshotSize.Store(info.Size())
		}
	}
	loaded := time.Since(start)
	var pending []uint32
	frames := 0
	base, current := v.sequence, v.sequence
	for _, sequence := range logs {
		if sequence < v.sequence {
			continue
		}
		n, dropped, err := replayWAL(logPath(dir, sequence), func(payload []byte) error {
			_, err := v.apply(payload, &pending)
			return err
		})
		if err != nil {
			return nil, err
		}
		if dropped > 0 {
			ix.logger.Warn("dropped a torn record at the end of the log (never acknowledged)", "version", name, "log", sequence, "bytes", dropped)
		}
		frames += n
		current = sequence
	}
	replayed := time.Since(start) - loaded
	g := v.gallery
	if g.graph != nil {
		if !graphLoaded {
			// No graph in the snapshot (first start in hnsw mode, or other parameters): link every slot.
			pending = pending[:0]
			g.graph = newHNSW(*ix.graphOptions(), &g.vectors)
			for slot := range g.records {
				pending = append(pending, uint32(slot))
			}
		}
		g.graph.insertParallel(pending, len(g.records))
		// Graphs saved by earlier versions, whose parallel inserts stranded nodes, are mended here.
		if repaired := g.repairGraph(); repaired > 0 {
			ix.logger.Info("linked graph nodes no search reached", "version", name, "nodes", repaired)
		}
	}
	log, err := openWAL(logPath(dir, current), ix.options.SyncWrites)
	if err != nil {
		return nil, err
	}
	v.sequence = current
	v.log.Store(log)
	// Only what the newest whole snapshot covers may go. A snapshot that did not finish leaves the
	// log it froze (base) and the one after it (current): both are needed until a newer snapshot
	// is whole, or a second crash would lose the first one's writes.
	removeBefore(dir, base)
	ix.logger.Info("opened gallery", "version", name, "items", g.live, "snapshot", loaded.Round(time.Millisecond),
		"log_records", frames, "replay", replayed.Round(time.Millisecond), "graph_loaded", graphLoaded,
		"total", time.Since(start).Round(time.Millisecond))
	return v, nil
}

// apply performs one log record on the gallery and returns how many items it touched. With
// pending set, fresh graph nodes are collected there instead of linked (replay links them at once).
func (v *version) apply(payload []byte, pending *[]uint32) (int, error) {
	d := decoder{buf: payload}
	g := v.gallery
	switch op := d.byte(); op {
	case opUpsert:
		count := d.uvarint()
		if count > uint64(len(payload)) {
			return 0, errCorrupt
		}
		vector := make([]float32, v.dim)
		var item decodedItem
		var fresh []uint32
		for i := uint64(0); i < count && d.err == nil; i++ {
			d.item(&item, vector)
			if d.err != nil {
				break
			}
			if slot, isNew := g.put(&item, vector); isNew {
				fresh = append(fresh, slot)
			}
		}
		if d.err != nil {
			return 0, d.err
		}
		if g.graph != nil && len(fresh) > 0 {
			if pending != nil {
				*pending = append(*pending, fresh...)
			} else {
				g.linkGraph(fresh)
			}
		}
		return int(count), nil
	case opDelete:
		count := d.uvarint()
		removed := 0
		for i := uint64(0); i < count && d.err == nil; i++ {
			if id := d.string(); d.err == nil && g.remove(id) {
				removed++
			}
		}
		return removed, d.err
	case opDeleteBefore:
		nanos := int64(d.uint64())
		if d.err != nil {
			return 0, d.err
		}
		return g.removeBefore(nanos, -1), nil
	case opDeleteCameraBefore:
		nanos := int64(d.uint64())
		camera := d.string()
		if d.err != nil {
			return 0, d.err
		}
		code, ok := g.codes[camera]
		if !ok {
			return 0, nil // no item of that camera
		}
		return g.removeBefore(nanos, int64(code)), nil
	default:
		return 0, fmt.Errorf("%w: unknown operation %d", errCorrupt, op)
	}
}

func (ix *Index) writeMetadata() error {
	meta := metadataFile{Active: ix.active, NextDir: ix.nextDir, Versions: []metadataVersion{}}
	for _, v := range ix.versions {
		meta.Versions = append(meta.Versions, metadataVersion{Name: v.name, Dim: v.dim, Dir: filepath.Base(v.dir)})
	}
	sort.Slice(meta.Versions, func(i, j int) bool { return meta.Versions[i].Name < meta.Versions[j].Name })
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(ix.dir, metadataName)
	temporary := path + ".tmp"
	file, err := os.Create(temporary)
	if err != nil {
		return fmt.Errorf("write %s: %w", metadataName, err)
	}
	if _, err := file.Write(data); err != nil {
		file.Close()
		return fmt.Errorf("write %s: %w", metadataName, err)
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return fmt.Errorf("write %s: %w", metadataName, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("write %s: %w", metadataName, err)
	}
	if err := os.Rename(temporary, path); err != nil {
		return fmt.Errorf("write %s: %w", metadataName, err)
	}
	return syncDir(ix.dir)
}

// CreateVersion makes an empty gallery.
func (ix *Index) CreateVersion(ctx context.Context, name string, dim int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == "" || len(name) > 255 {
		return fmt.Errorf("embedded index: version name must be 1-255 bytes, not %q", name)
	}
	if dim < 1 || dim > 65536 {
		return fmt.Errorf("embedded index: dimension must be 1-65536, not %d", dim)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.closed {
		return ErrClosed
	}
	if existing := ix.versions[name]; existing != nil {
		if existing.dim != dim {
			return fmt.Errorf("%w: version %q exists with dimension %d, not %d", index.ErrDimension, name, existing.dim, dim)
		}
		return nil
	}
	dir := filepath.Join(ix.dir, fmt.Sprintf("v%06d", ix.nextDir))
	ix.nextDir++
	v, err := ix.openVersion(name, dim, dir)
	if err != nil {
		return fmt.Errorf("embedded index: create version %q: %w", name, err)
	}
	ix.versions[name] = v
	if err := ix.writeMetadata(); err != nil {
		delete(ix.versions, name)
		v.log.Load().close()
		os.RemoveAll(dir)
		return fmt.Errorf("embedded index: create version %q: %w", name, err)
	}
	return nil
}

// Activate makes version the one "" refers to. Lookups resolve "" under the table lock, so each
// one sees either the old or the new gallery, never a mix.
func (ix *Index) Activate(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.closed {
		return ErrClosed
	}
	if ix.versions[name] == nil {
		return fmt.Errorf("%w: %q", index.ErrNoVersion, name)
	}
	previous := ix.active
	ix.active = name
	if err := ix.writeMetadata(); err != nil {
		ix.active = previous
		return fmt.Errorf("embedded index: activate %q: %w", name, err)
	}
	return nil
}

// Active describes the active version.
func (ix *Index) Active(ctx context.Context) (index.Version, error) {
	v, err := ix.lookup(ctx, "")
	if err != nil {
		return index.Version{}, err
	}
	return ix.describe(v), nil
}

// describe never holds both locks at once: DropVersion and Close take the table lock and then a
// version's, so taking them in the other order here could deadlock.
func (ix *Index) describe(v *version) index.Version {
	ix.mu.RLock()
	active := ix.active == v.name
	ix.mu.RUnlock()
	v.mu.RLock()
	defer v.mu.RUnlock()
	return index.Version{Name: v.name, Dim: v.dim, Count: v.gallery.live, Active: active}
}

// Versions lists every gallery by name.
func (ix *Index) Versions(ctx context.Context) ([]index.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	if ix.closed {
		ix.mu.RUnlock()
		return nil, ErrClosed
	}
	list := make([]*version, 0, len(ix.versions))
	for _, v := range ix.versions {
		list = append(list, v)
	}
	ix.mu.RUnlock()
	versions := make([]index.Version, 0, len(list))
	for _, v := range list {
		versions = append(versions, ix.describe(v))
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i].Name < versions[j].Name })
	return versions, nil
}

// DropVersion deletes an inactive gallery and its files.
func (ix *Index) DropVersion(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.closed {
		return ErrClosed
	}
	v := ix.versions[name]
	if v == nil {
		return fmt.Errorf("%w: %q", index.ErrNoVersion, name)
	}
	if ix.active == name {
		return fmt.Errorf("%w: %q can not be dropped; activate another version first", index.ErrActiveVersion, name)
	}
	delete(ix.versions, name)
	if err := ix.writeMetadata(); err != nil {
		ix.versions[name] = v
		return fmt.Errorf("embedded index: drop %q: %w", name, err)
	}
	v.mu.Lock()
	v.dropped = true
	v.gallery = newGallery(v.dim, false, nil)
	v.mu.Unlock()
	v.log.Load().close()
	// The metadata no longer names the directory: if this fails, the next Open removes it.
	if err := os.RemoveAll(v.dir); err != nil {
		ix.logger.Warn("could not remove a dropped gallery's files", "version", name, "error", err)
	}
	return nil
}

// lookup resolves a version name ("" for the active one).
func (ix *Index) lookup(ctx context.Context, name string) (*version, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.closed {
		return nil, ErrClosed
	}
	if name == "" {
		if ix.active == "" {
			return nil, index.ErrNoActiveVersion
		}
		name = ix.active
	}
	v := ix.versions[name]
	if v == nil {
		return nil, fmt.Errorf("%w: %q", index.ErrNoVersion, name)
	}
	return v, nil
}

// write appends one record, applies it and waits for it to be durable.
func (ix *Index) write(v *version, payload []byte) (int, error) {
	v.mu.Lock()
	if v.dropped {
		v.mu.Unlock()
		return 0, fmt.Errorf("%w: %q", index.ErrNoVersion, v.name)
	}
	if v.failed != nil {
		v.mu.Unlock()
		return 0, fmt.Errorf("embedded index: version %q refuses writes after an earlier failure: %w", v.name, v.failed)
	}
	log := v.log.Load()
	end, err := log.append(payload)
	if err != nil {
		if !errors.Is(err, errAppendUndone) {
			v.failed = err
		}
		v.mu.Unlock()
		return 0, fmt.Errorf("embedded index: %w", err)
	}
	count, err := v.apply(payload, nil)
	v.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("embedded index: apply: %w", err)
	}
	if err := log.syncTo(end); err != nil {
		v.mu.Lock()
		v.failed = err
		v.mu.Unlock()
		return 0, fmt.Errorf("embedded index: %w", err)
	}
	if size := log.size(); size > ix.options.SnapshotBytes && size > v.snapshotSize.Load() && v.snapshotting.CompareAndSwap(false, true) {
		select {
		case ix.snapshots <- v:
		default:
			v.snapshotting.Store(false)
		}
	}
	return count, nil
}

// Upsert validates the whole batch first, so a bad item stores nothing.
func (ix *Index) Upsert(ctx context.Context, name string, items []index.Item) error {
	v, err := ix.lookup(ctx, name)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	size := 16
	for i := range items {
		item := &items[i]
		if item.ID == "" || len(item.ID) > maxIDLength {
			return fmt.Errorf("embedded index: item %d: id must be 1-%d bytes", i, maxIDLength)
		}
		if len(item.Metadata.Camera) > maxIDLength || len(item.Metadata.Model) > maxIDLength {
			return fmt.Errorf("embedded index: item %q: camera and model must be at most %d bytes", item.ID, maxIDLength)
		}
		if len(item.Vector) != v.dim {
			return fmt.Errorf("%w: item %q has %d values, version %q has %d", index.ErrDimension, item.ID, len(item.Vector), v.name, v.dim)
		}
		for _, value := range item.Vector {
			if math.IsNaN(float64(value)) || math.IsInf(float64(value), 0) {
				return fmt.Errorf("embedded index: item %q: vector has a NaN or infinite value", item.ID)
			}
		}
		if _, err := timeToNanos(item.Metadata.Time); err != nil {
			return fmt.Errorf("embedded index: item %q: %w", item.ID, err)
		}
		size += 64 + len(item.ID) + len(item.Metadata.Camera) + len(item.Metadata.Model) + 4*v.dim
	}
	payload := make([]byte, 0, size)
	payload = append(payload, opUpsert)
	payload = binary.AppendUvarint(payload, uint64(len(items)))
	for i := range items {
		nanos, _ := timeToNanos(items[i].Metadata.Time)
		payload = appendItem(payload, &items[i], nanos)
	}
	_, err = ix.write(v, payload)
	return err
}

// Delete removes items by id.
func (ix *Index) Delete(ctx context.Context, name string, ids []string) (int, error) {
	v, err := ix.lookup(ctx, name)
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	payload := []byte{opDelete}
	payload = binary.AppendUvarint(payload, uint64(len(ids)))
	for _, id := range ids {
		if len(id) > maxIDLength {
			return 0, fmt.Errorf("embedded index: id longer than %d bytes", maxIDLength)
		}
		payload = appendString(payload, id)
	}
	return ix.write(v, payload)
}

// DeleteBefore removes items older than t.
func (ix *Index) DeleteBefore(ctx context.Context, name string, t time.Time) (int, error) {
	v, err := ix.lookup(ctx, name)
	if err != nil {
		return 0, err
	}
	payload := []byte{opDeleteBefore}
	payload = binary.LittleEndian.AppendUint64(payload, uint64(clampNanos(t, math.MinInt64)))
	return ix.write(v, payload)
}

// DeleteCameraBefore removes one camera's items older than t.
func (ix *Index) DeleteCameraBefore(ctx context.Context, name, camera string, t time.Time) (int, error) {
	v, err := ix.lookup(ctx, name)
	if err != nil {
		return 0, err
	}
	if len(camera) > maxIDLength {
		return 0, fmt.Errorf("embedded index: camera longer than %d bytes", maxIDLength)
	}
	payload := []byte{opDeleteCameraBefore}
	payload = binary.LittleEndian.AppendUint64(payload, uint64(clampNanos(t, math.MinInt64)))
	payload = appendString(payload, camera)
	return ix.write(v, payload)
}

// read runs fn on the named version's gallery under the version's read lock.
func (ix *Index) read(ctx context.Context, name string, fn func(g *gallery)) error {
	v, err := ix.lookup(ctx, name)
	if err != nil {
		return err
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.dropped {
		return fmt.Errorf("%w: %q", index.ErrNoVersion, name)
	}
	fn(v.gallery)
	return nil
}

// Count is the number of live items.
func (ix *Index) Count(ctx context.Context, name string) (int, error) {
	count := 0
	err := ix.read(ctx, name, func(g *gallery) { count = g.live })
	return count, err
}

// Get returns the existing items among ids, in the order asked.
func (ix *Index) Get(ctx context.Context, name string, ids []string) ([]index.Item, error) {
	var items []index.Item
	err := ix.read(ctx, name, func(g *gallery) {
		items = make([]index.Item, 0, len(ids))
		for _, id := range ids {
			if slot, ok := g.slots[id]; ok {
				items = append(items, g.item(slot))
			}
		}
	})
	return items, err
}

// TrackItems returns the items of these tracks, stopping at limit items.
func (ix *Index) TrackItems(ctx context.Context, name string, tracks []index.TrackRef, limit int) ([]index.Item, error) {
	if limit < 0 {
		return nil, fmt.Errorf("index: negative limit %d", limit)
	}
	var items []index.Item
	err := ix.read(ctx, name, func(g *gallery) {
		slots := g.trackSlots(tracks, limit, nil)
		items = make([]index.Item, len(slots))
		for i, slot := range slots {
			items[i] = g.item(slot)
		}
	})
	return items, err
}

// minGraphPass is the least share of slots a filter may keep for the graph to answer: below it
// the graph walk would visit most of the graph anyway, and the filtered scan skips the dot
// products of rejected slots.
const minGraphPass = 0.2

// Search finds the nearest items to each query vector.
func (ix *Index) Search(ctx context.Context, name string, query index.Query) ([][]index.Match, error) {
	v, err := ix.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := query.Validate(v.dim); err != nil {
		return nil, err
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.dropped {
		return nil, fmt.Errorf("%w: %q", index.ErrNoVersion, name)
	}
	g := v.gallery
	filter := g.compile(query.Filter)
	var found [][]candidate
	useGraph := g.graph != nil && !query.Exact && (ix.options.ExactBelow < 0 || len(g.records) >= ix.options.ExactBelow)
	if useGraph && filter.selective() && g.passFraction(&filter) < minGraphPass {
		useGraph = false
	}
	if useGraph {
		found = ix.searchGraph(g, query, &filter)
	} else {
		found = g.searchExact(query.Vectors, query.K, &filter)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	results := make([][]index.Match, len(found))
	for q, candidates := range found {
		results[q] = make([]index.Match, len(candidates))
		for i, c := range candidates {
			results[q][i] = index.Match{ID: g.records[c.slot].id, Score: c.score, Metadata: g.metadata(c.slot)}
		}
	}
	return results, nil
}

// searchGraph answers each query from the graph, in parallel over queries. A query for which the
// graph finds fewer than K passing items while the gallery may hold more is answered exactly, so
// a filter never silently shortens a result.
func (ix *Index) searchGraph(g *gallery, query index.Query, filter *compiledFilter) [][]candidate {
	found := make([][]candidate, len(query.Vectors))
	accept := func(slot uint32) bool { return g.pass(filter, slot) }
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(query.Vectors)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				q := int(next.Add(1) - 1)
				if q >= len(query.Vectors) {
					return
				}
				candidates := g.graph.search(query.Vectors[q], query.K, g.graph.efSearch, len(g.records), accept)
				if len(candidates) < query.K && len(candidates) < g.live {
					candidates = g.searchExact(query.Vectors[q:q+1], query.K, filter)[0]
				}
				cut := len(candidates)
				for cut > 0 && candidates[cut-1].score < filter.minScore {
					cut--
				}
				found[q] = candidates[:cut]
			}
		}()
	}
	wg.Wait()
	return found
}

// snapshotLoop writes the snapshots that writes ask for, one at a time, until Close.
func (ix *Index) snapshotLoop() {
	defer ix.done.Done()
	for {
		select {
		case <-ix.stop:
			return
		case v := <-ix.snapshots:
			if err := ix.snapshot(v); err != nil {
				ix.logger.Error("snapshot failed; the log keeps growing until one succeeds", "version", v.name, "error", err)
			}
			v.snapshotting.Store(false)
		}
	}
}

// snapshot writes the gallery to a new snapshot and starts a new log after it. Writes wait only
// while the gallery is frozen (its records and graph copied, its vectors shared copy-on-write)
// and the new log takes over; the snapshot is then written from the frozen copy while writes go
// to the new log. Order matters for a crash at any point: the new log starts at the freeze, the
// snapshot is renamed into place only when whole, and older files are removed only after. A
// failed snapshot loses nothing: the older snapshot and every log after it are still there.
func (ix *Index) snapshot(v *version) error {
	v.mu.RLock()
	if v.dropped || v.failed != nil {
		v.mu.RUnlock()
		return nil
	}
	start := time.Now()
	sequence := v.sequence + 1
	newLog, err := openWAL(logPath(v.dir, sequence), ix.options.SyncWrites)
	if err != nil {
		v.mu.RUnlock()
		return err
	}
	view := v.gallery.freeze()
	old := v.log.Swap(newLog)
	v.sequence = sequence
	v.mu.RUnlock()
	paused := time.Since(start)
	if err := old.close(); err != nil {
		ix.logger.Warn("closing the replaced log", "error", err)
	}

	path := snapshotPath(v.dir, sequence)
	err = writeSnapshot(path, view)
	v.mu.Lock()
	v.gallery.thaw()
	v.mu.Unlock()
	if err != nil {
		return err
	}
	removeBefore(v.dir, sequence)
	if info, err := os.Stat(path); err == nil {
		v.snapshotSize.Store(info.Size())
	}
	ix.logger.Info("wrote snapshot", "version", v.name, "items", view.live, "took", time.Since(start).Round(time.Millisecond),
		"writes_paused", paused.Round(time.Microsecond))
	return nil
}

// removeBefore deletes the snapshots and logs of dir older than sequence, which a snapshot at
// sequence has made unnecessary.
func removeBefore(dir string, sequence uint64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, entry := range entries {
		var older uint64
		_, snapErr := fmt.Sscanf(entry.Name(), "snapshot-%016x.snap", &older)
		if snapErr != nil {
			if _, err := fmt.Sscanf(entry.Name(), "log-%016x.wal", &older); err != nil {
				continue
			}
		}
		if older < sequence {
			os.Remove(filepath.Join(dir, entry.Name()))
		}
	}
}

// Snapshot writes a snapshot of every gallery now (normally they are written as logs grow).
func (ix *Index) Snapshot(ctx context.Context) error {
	ix.mu.RLock()
	if ix.closed {
		ix.mu.RUnlock()
		return ErrClosed
	}
	list := make([]*version, 0, len(ix.versions))
	for _, v := range ix.versions {
		list = append(list, v)
	}
	ix.mu.RUnlock()
	for _, v := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		for !v.snapshotting.CompareAndSwap(false, true) {
			time.Sleep(10 * time.Millisecond)
		}
		err := ix.snapshot(v)
		v.snapshotting.Store(false)
		if err != nil {
			return fmt.Errorf("embedded index: snapshot %q: %w", v.name, err)
		}
	}
	return nil
}

// Compact rewrites every gallery's files without the vectors deleted from it: a snapshot holds
// live vectors only and replaces the older snapshot and logs, which keep deleted ones until then.
// An erasure calls it so that what it deleted leaves the disk at once.
func (ix *Index) Compact(ctx context.Context) error { return ix.Snapshot(ctx) }

func (ix *Index) closeVersions() error {
	var errs []error
	for _, v := range ix.versions {
		if log := v.log.Load(); log != nil {
			errs = append(errs, log.close())
		}
	}
	return errors.Join(errs...)
}

// Close stops background snapshots and closes the logs. Every acknowledged write is already in
// a log, so Close writes no snapshot of its own.
func (ix *Index) Close() error {
	ix.mu.Lock()
	if ix.closed {
		ix.mu.Unlock()
		return nil
	}
	ix.closed = true
	ix.mu.Unlock()
	close(ix.stop)
	ix.done.Wait()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, v := range ix.versions {
		v.mu.Lock()
		//lint:ignore SA2001 taking the lock waits for the writes in flight; nothing is done under it
		v.mu.Unlock()
	}
	err := ix.closeVersions()
	if ix.lock != nil {
		ix.lock.Close()
	}
	return err
}
