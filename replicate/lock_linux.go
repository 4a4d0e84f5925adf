//go:build linux

package replicate

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Byte-range locks are open-file-description (OFD) locks: they belong to
// the *os.File that took them, so they conflict with SQLite's POSIX locks in
// other processes and with the OFD locks of the ncruces driver in this one,
// and closing an unrelated descriptor of the same file never drops them.

// errLockBusy is returned when a lock is held by someone else.
var errLockBusy = errors.New("lock busy")

func setLock(f *os.File, typ int16, start, n int64) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: n}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
			return errLockBusy
		default:
			return &os.PathError{Op: "lock", Path: f.Name(), Err: err}
		}
	}
}

func readLock(f *os.File, start, n int64) error  { return setLock(f, unix.F_RDLCK, start, n) }
func writeLock(f *os.File, start, n int64) error { return setLock(f, unix.F_WRLCK, start, n) }
func unlock(f *os.File, start, n int64) error    { return setLock(f, unix.F_UNLCK, start, n) }

// lockType returns the type of a lock another owner holds on the range
// (unix.F_RDLCK or unix.F_WRLCK), or unix.F_UNLCK if there is none.
func lockType(f *os.File, start, n int64) (int16, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: start, Len: n}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "test lock", Path: f.Name(), Err: err}
		}
		return lk.Type, nil
	}
}

// inode returns the inode number of f, to notice a file replaced by rename.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

const (
	lockUnlocked = unix.F_UNLCK
	lockWrite    = unix.F_WRLCK
)

// inUse reports whether a connection, or a running walsync, has the
// database at path open: it holds a lock on the database's lock bytes or on
// its WAL-index dead-man's switch.
func inUse(path string) bool {
	for _, c := range []struct {
		path     string
		start, n int64
	}{{path, pendingByte, 2 + sharedSize}, {path + "-shm", shmDMS, 1}} {
		f, err := os.Open(c.path)
		if err != nil {
			continue
		}
		t, err := lockType(f, c.start, c.n)
		f.Close()
		if err == nil && t != lockUnlocked {
			return true
		}
	}
	return false
}
