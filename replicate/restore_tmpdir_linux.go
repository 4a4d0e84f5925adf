//go:build linux

package replicate

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// restoreDir is the private directory (mode 0700) next to the output into
// which a restore downloads its files: on the output's file system, named
// and locked like the restore's temporary file so that [removeStaleTemps]
// removes it if the restore is killed and leaves it alone while it runs.
type restoreDir struct {
	path string
	lock *os.File // holds the flock
}

func createRestoreDir(out string) (*restoreDir, error) {
	path, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+restoreTempInfix+"*")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(path)
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &restoreDir{path: path, lock: f}, nil
}

// remove removes the directory and what it holds, and releases its
// lock. It may be called more than once.
func (d *restoreDir) remove() error {
	err := os.RemoveAll(d.path)
	if d.lock != nil {
		if cerr := d.lock.Close(); err == nil {
			err = cerr
		}
		d.lock = nil
	}
	return err
}

// checkDownloadSpace refuses a plan whose files would not fit in the free
// space of dir's file system.
func checkDownloadSpace(dir string, total int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; total > free {
		return fmt.Errorf("the files to download take %d bytes, %d free in %s", total, free, dir)
	}
	return nil
}
