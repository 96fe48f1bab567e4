// Package atomicfile replaces files so that readers see the old content or the new, never a part:
// the data goes to a uniquely named temporary file beside the target, is synced, and is renamed
// over it. Concurrent writers of one path never share a temporary file.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with data.
func Write(path string, data []byte) error {
	file, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := file.Name()
	_, err = file.Write(data)
	if err == nil {
		err = file.Sync()
	}
	if closeErr := file.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Copy replaces dst with the bytes src holds now, keeping src's permissions, and returns how many
// it copied. A file that grows while it is read (a log being appended) is copied as far as it
// was when the copy reached its end. Without sync the data is not synced before the rename: a
// caller copying many files syncs the file system once at the end instead (a crash may then leave
// a copy empty, never mixed).
func Copy(src, dst string, sync bool) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return 0, err
	}
	file, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return 0, err
	}
	tmp := file.Name()
	written, err := io.Copy(file, in)
	if err == nil {
		err = file.Chmod(info.Mode().Perm())
	}
	if err == nil && sync {
		err = file.Sync()
	}
	if closeErr := file.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return written, err
}
