package cropstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/minio/minio-go/v7"
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
