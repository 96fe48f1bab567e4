package cropstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/reid-project/reid/internal/lease"
)

// Folder keeps files that are not crops in the bucket, under a name starting with '@' that no
// camera id has, so that listing cameras, retention and erasures never see them: the lookup
// server's watches, for one (lookup.WatchStore), which then outlive the machine that serves them.
type Folder struct {
	s3     *S3
	prefix string
}

// Folder returns the folder name of the bucket: '@' and letters, digits, '-' or '_'.
func (s *S3) Folder(name string) (*Folder, error) {
	rest, ok := strings.CutPrefix(name, "@")
	if !ok || rest == "" || strings.ContainsAny(rest, "/\\.") || name == erasuresDir {
		return nil, fmt.Errorf("crop store: %q is not a folder name ('@' and a name, not the record of erasures)", name)
	}
	return &Folder{s3: s, prefix: name + "/"}, nil
}

// List returns the names of the files in the folder, sorted.
func (f *Folder) List(ctx context.Context) ([]string, error) {
	keys, err := f.s3.list(ctx, f.prefix, false)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(keys))
	for _, key := range keys {
		if name := strings.TrimPrefix(key, f.prefix); name != "" && !strings.HasSuffix(name, "/") {
			names = append(names, name)
		}
	}
	return names, nil
}

// Read returns a file; a missing one is an error wrapping fs.ErrNotExist.
func (f *Folder) Read(ctx context.Context, name string) ([]byte, error) {
	key, err := f.key(name)
	if err != nil {
		return nil, err
	}
	data, err := f.s3.read(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("crop store: %s: %w", key, fs.ErrNotExist)
	}
	return data, err
}

// Write replaces a file whole: an object appears whole or not at all.
func (f *Folder) Write(ctx context.Context, name string, data []byte) error {
	key, err := f.key(name)
	if err != nil {
		return err
	}
	if _, err := f.s3.client.PutObject(ctx, f.s3.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("crop store: put %s: %w", key, err)
	}
	return nil
}

// ReadVersion returns a file and its version (the object's ETag), which changes with every write;
// a missing file is an error wrapping fs.ErrNotExist.
func (f *Folder) ReadVersion(ctx context.Context, name string) ([]byte, string, error) {
	key, err := f.key(name)
	if err != nil {
		return nil, "", err
	}
	object, err := f.s3.client.GetObject(ctx, f.s3.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("crop store: get %s: %w", key, err)
	}
	defer object.Close()
	info, err := object.Stat()
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return nil, "", fmt.Errorf("crop store: %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, "", fmt.Errorf("crop store: get %s: %w", key, err)
	}
	data := make([]byte, info.Size)
	if _, err := io.ReadFull(object, data); err != nil {
		return nil, "", fmt.Errorf("crop store: get %s: %w", key, err)
	}
	return data, info.ETag, nil
}

// Swap writes a file only if it is still at version (with version "", only if there is none),
// atomically against every other writer: the bucket checks the condition (S3's conditional
// writes, If-Match and If-None-Match), and a lost race is an error wrapping lease.ErrChanged. It
// returns the new version. A Folder is a lease.Store.
func (f *Folder) Swap(ctx context.Context, name string, data []byte, version string) (string, error) {
	key, err := f.key(name)
	if err != nil {
		return "", err
	}
	options := minio.PutObjectOptions{}
	if version == "" {
		options.SetMatchETagExcept("*")
	} else {
		options.SetMatchETag(strings.Trim(version, `"`))
	}
	info, err := f.s3.client.PutObject(ctx, f.s3.bucket, key, bytes.NewReader(data), int64(len(data)), options)
	if response := minio.ToErrorResponse(err); response.StatusCode == http.StatusPreconditionFailed ||
		response.StatusCode == http.StatusConflict || response.Code == "PreconditionFailed" {
		// 409 is S3's answer to two conditional writes of one key at once: one of them won.
		return "", fmt.Errorf("%w: %s", lease.ErrChanged, key)
	}
	if err != nil {
		return "", fmt.Errorf("crop store: put %s: %w", key, err)
	}
	return info.ETag, nil
}

// Remove deletes a file; a missing one is no error.
func (f *Folder) Remove(ctx context.Context, name string) error {
	key, err := f.key(name)
	if err != nil {
		return err
	}
	if err := f.s3.client.RemoveObject(ctx, f.s3.bucket, key, minio.RemoveObjectOptions{}); err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return fmt.Errorf("crop store: delete %s: %w", key, err)
	}
	return nil
}

// Location names the folder in logs.
func (f *Folder) Location() string {
	return "s3://" + f.s3.bucket + "/" + strings.TrimSuffix(f.prefix, "/")
}

func (f *Folder) key(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", fmt.Errorf("crop store: %q is not a file name", name)
	}
	return f.prefix + name, nil
}
