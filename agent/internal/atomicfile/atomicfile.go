// Package atomicfile writes files so that a crash leaves either the old
// content or the new, never a mix: temp file, fsync, rename, directory
// fsync. The bot's state and its spool both rely on it.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix starts the name of every temporary file Write makes; a reader
// of the directory ignores (and may delete) such files, which a crash can
// leave behind half-written.
const TempPrefix = ".tmp-"

// IsTemp reports whether name (a base name) is a temporary file of Write.
func IsTemp(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// Write replaces dir/name with data, durably, with permissions perm.
func Write(dir, name string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(dir, TempPrefix+name+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// Remove deletes dir/name and makes the deletion durable.
func Remove(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}
