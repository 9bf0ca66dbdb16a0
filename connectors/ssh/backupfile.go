package ssh

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// makeStampDir makes BackupDir/STAMP (0700), with a -N suffix
// when two deployments start in the same nanosecond.
func makeStampDir(root, stamp string) (string, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", err
	}
	dir := filepath.Join(root, stamp)
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, syncDir(root)
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return "", err
		}
		dir = filepath.Join(root, fmt.Sprintf("%s-%d", stamp, i))
	}
}

// writeAtomic writes data to path through a temp file in the same
// directory: fsync, rename, fsync the directory. A crash leaves the old
// file or the new one, never a part.
func writeAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".emsign-tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}
