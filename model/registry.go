// Package model is the registry of re-id model versions under the data dir. Each version is a
// directory holding its weights and a metadata file; exactly one version is active, and the
// embedder, lookup and trainer all read the active one unless told otherwise.
//
// Layout:
//
//	<dir>/active              id of the active version (replaced atomically)
//	<dir>/<id>/metadata.json  Metadata
//	<dir>/<id>/<weights file> the weights, as imported or as saved by the trainer
//
// Ids are "v1", "v2", ... in creation order. They double as index gallery names, so they stay
// short and made of letters and digits.
package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/reid-project/reid/internal/atomicfile"
)

// Metadata describes one model version.
type Metadata struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arch is the network: osnet_x0_25, osnet_x1_0 or resnet50.
	Arch string `json:"arch"`
	// Options are architecture options (pooling, last stride, neck) as the torch package reads them.
	Options map[string]string `json:"options,omitempty"`
	Dim     int               `json:"dim"`
	// InputHeight and InputWidth are the crop size the network expects.
	InputHeight int        `json:"input_height"`
	InputWidth  int        `json:"input_width"`
	Mean        [3]float32 `json:"mean"`
	Std         [3]float32 `json:"std"`
	// Source says where the weights came from: an imported file or a training run.
	Source string `json:"source"`
	// Parent is the version this one was trained from, if any.
	Parent  string    `json:"parent,omitempty"`
	Created time.Time `json:"created"`
	// WeightsFile is the weights' file name inside the version directory; WeightsFormat is
	// "pytorch" (a torch.save zip state dict) or "reid" (saved by our trainer).
	WeightsFile   string `json:"weights_file"`
	WeightsFormat string `json:"weights_format"`
	WeightsSHA256 string `json:"weights_sha256"`
	// Training summarises the run that made this version (empty for imports).
	Training map[string]any `json:"training,omitempty"`
	// Import lists what the weight import skipped, so a user can see a partial load.
	MissingKeys    []string `json:"missing_keys,omitempty"`
	UnexpectedKeys []string `json:"unexpected_keys,omitempty"`
}

// Version is a registered model version.
type Version struct {
	Metadata
	Dir    string `json:"dir"`
	Active bool   `json:"active"`
}

// WeightsPath is the full path of the version's weights.
func (v Version) WeightsPath() string { return filepath.Join(v.Dir, v.WeightsFile) }

// ErrNotFound is returned for an unknown version id.
var ErrNotFound = errors.New("model version not found")

// ErrNoActive is returned when no version has been promoted yet.
var ErrNoActive = errors.New("no active model version: import one with `reid model import` or promote one")

// Registry is a directory of model versions.
type Registry struct {
	dir string
}

// Open opens (creating if needed) the registry in dir.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("model registry: %w", err)
	}
	return &Registry{dir: dir}, nil
}

// Register copies the weights file into a new version directory, writes its metadata and
// returns the new version. The first version registered becomes active.
func (r *Registry) Register(ctx context.Context, metadata Metadata, weightsPath string) (Version, error) {
	if metadata.Arch == "" || metadata.Dim <= 0 {
		return Version{}, errors.New("model registry: metadata needs arch and dim")
	}
	id, dir, err := r.newVersionDir()
	if err != nil {
		return Version{}, err
	}
	cleanup := func(err error) (Version, error) {
		os.RemoveAll(dir)
		return Version{}, err
	}
	metadata.ID = id
	if metadata.Created.IsZero() {
		metadata.Created = time.Now().UTC()
	}
	if metadata.WeightsFile == "" {
		metadata.WeightsFile = "weights" + filepath.Ext(weightsPath)
	}
	sum, err := copyFile(ctx, weightsPath, filepath.Join(dir, metadata.WeightsFile))
	if err != nil {
		return cleanup(err)
	}
	metadata.WeightsSHA256 = sum
	raw, err := json.MarshalIndent(metadata, "", "  ")
	if err != nil {
		return cleanup(err)
	}
	if err := writeAtomic(filepath.Join(dir, "metadata.json"), raw); err != nil {
		return cleanup(err)
	}
	if _, err := r.Active(); errors.Is(err, ErrNoActive) {
		if err := r.Promote(id); err != nil {
			return Version{}, err
		}
	}
	return r.Get(id)
}

// newVersionDir claims the next free id; Mkdir is atomic, so concurrent registrations never
// share an id.
func (r *Registry) newVersionDir() (string, string, error) {
	versions, err := r.List()
	if err != nil {
		return "", "", err
	}
	next := 1
	for _, version := range versions {
		if n, ok := idNumber(version.ID); ok && n >= next {
			next = n + 1
		}
	}
	for attempt := 0; attempt < 1000; attempt++ {
		id := "v" + strconv.Itoa(next+attempt)
		dir := filepath.Join(r.dir, id)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return id, dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", "", fmt.Errorf("model registry: %w", err)
		}
	}
	return "", "", errors.New("model registry: could not claim a version id")
}

func idNumber(id string) (int, bool) {
	if !strings.HasPrefix(id, "v") {
		return 0, false
	}
	n, err := strconv.Atoi(id[1:])
	return n, err == nil && n > 0
}

// List returns every version, oldest first.
func (r *Registry) List() ([]Version, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("model registry: %w", err)
	}
	active, _ := r.activeID()
	var versions []Version
	for _, entry := range entries {
		if _, ok := idNumber(entry.Name()); !entry.IsDir() || !ok {
			continue
		}
		version, err := r.read(entry.Name())
		if errors.Is(err, ErrNotFound) {
			continue // a registration in progress or abandoned
		}
		if err != nil {
			return nil, err
		}
		version.Active = version.ID == active
		versions = append(versions, version)
	}
	sort.Slice(versions, func(i, j int) bool {
		a, _ := idNumber(versions[i].ID)
		b, _ := idNumber(versions[j].ID)
		return a < b
	})
	return versions, nil
}

func (r *Registry) read(id string) (Version, error) {
	if _, ok := idNumber(id); !ok {
		return Version{}, fmt.Errorf("%w: %q is not a version id (v1, v2, ...)", ErrNotFound, id)
	}
	dir := filepath.Join(r.dir, id)
	raw, err := os.ReadFile(filepath.Join(dir, "metadata.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Version{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Version{}, fmt.Errorf("model registry: %w", err)
	}
	var metadata Metadata
	if err := json.Unmarshal(raw, &metadata); err != nil {
		return Version{}, fmt.Errorf("model registry: %s/metadata.json: %w", id, err)
	}
	return Version{Metadata: metadata, Dir: dir}, nil
}

// Get returns a version by id; "" or "active" mean the active version.
func (r *Registry) Get(id string) (Version, error) {
	if id == "" || id == "active" {
		return r.Active()
	}
	version, err := r.read(id)
	if err != nil {
		return Version{}, err
	}
	active, _ := r.activeID()
	version.Active = version.ID == active
	return version, nil
}

// Active returns the active version.
func (r *Registry) Active() (Version, error) {
	id, err := r.activeID()
	if err != nil {
		return Version{}, err
	}
	version, err := r.read(id)
	if err != nil {
		return Version{}, err
	}
	version.Active = true
	return version, nil
}

func (r *Registry) activeID() (string, error) {
	raw, err := os.ReadFile(filepath.Join(r.dir, "active"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrNoActive
	}
	if err != nil {
		return "", fmt.Errorf("model registry: %w", err)
	}
	id := strings.TrimSpace(string(raw))
	if id == "" {
		return "", ErrNoActive
	}
	return id, nil
}

// Promote makes id the active version.
func (r *Registry) Promote(id string) error {
	if _, err := r.read(id); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(r.dir, "active"), []byte(id+"\n"))
}

func copyFile(ctx context.Context, from, to string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	source, err := os.Open(from)
	if err != nil {
		return "", fmt.Errorf("model registry: %w", err)
	}
	defer source.Close()
	target, err := os.Create(to)
	if err != nil {
		return "", fmt.Errorf("model registry: %w", err)
	}
	hash := sha256.New()
	_, err = io.Copy(io.MultiWriter(target, hash), source)
	if err == nil {
		err = target.Sync()
	}
	if closeErr := target.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return "", fmt.Errorf("model registry: copy weights: %w", err)
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}

func writeAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("model registry: %w", err)
	}
	return nil
}
