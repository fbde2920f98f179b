// Package fsutil holds the file-writing discipline chive's state files
// share: write a temporary file, sync it, rename it over the target, so a
// crash leaves either the old contents or the new, never a torn file.
package fsutil

import (
	"os"
	"path/filepath"
)

// WriteFileAtomic writes b to path with mode perm through a synced
// temporary file in the same directory, renamed over path; the directory is
// synced too, so the rename itself survives a crash.
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
