//go:build linux

package replicate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// restoreTempInfix marks the temporary file a restore writes:
// ".<output base>.walsync-restore-<digits>", as os.CreateTemp names it.
const restoreTempInfix = ".walsync-restore-"

// staleTempAge is how old an unlocked restore temporary file must be before
// another restore removes it: a restore locks its file right after creating
// it, and the age closes the window in between.
const staleTempAge = time.Minute

// createRestoreTemp creates the temporary file of a restore of out and
// holds an exclusive flock(2) on it for as long as it is open, so that
// [removeStaleTemps] in another process leaves it alone. (SQLite's locks,
// taken by the integrity check, are fcntl locks, independent of flock.)
func createRestoreTemp(out string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+restoreTempInfix+"*")
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// isRestoreTemp reports whether name is a restore temporary file (or its
// -wal or -shm) and returns the name of the main file.
func isRestoreTemp(name string) (string, bool) {
	main := strings.TrimSuffix(strings.TrimSuffix(name, "-wal"), "-shm")
	i := strings.LastIndex(main, restoreTempInfix)
	if !strings.HasPrefix(main, ".") || i <= 1 {
		return "", false
	}
	digits := main[i+len(restoreTempInfix):]
	if _, err := strconv.ParseUint(digits, 10, 64); err != nil {
		return "", false
	}
	return main, true
}

// removeStaleTemps removes the temporary files that killed restores left in
// dir: files named as [createRestoreTemp] names them and download
// directories named as [createRestoreDir] names them, not modified for
// [staleTempAge] and not locked by a running restore. It returns the names
// removed.
func removeStaleTemps(dir string, now time.Time) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		main, ok := isRestoreTemp(e.Name())
		if !ok || !(e.Type().IsRegular() || e.IsDir()) {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < staleTempAge {
			continue
		}
		if !tempUnlocked(filepath.Join(dir, main)) {
			continue
		}
		if os.RemoveAll(filepath.Join(dir, e.Name())) == nil {
			removed = append(removed, e.Name())
		}
	}
	return removed
}

// tempUnlocked reports whether no running restore holds the temporary file
// path (a missing main file leaves its -wal and -shm orphaned).
func tempUnlocked(path string) bool {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return true
	} else if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// openBy returns the ID of a process that has path open, or 0. It reads
// /proc/*/fd, so it sees the processes this user may inspect (all of them
// for root); a file open in an unreadable process is not found.
func openBy(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	want, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil {
				continue
			}
			if st.Dev == want.Dev && st.Ino == want.Ino {
				return pid
			}
		}
	}
	return 0
}

// checkNotOpen refuses to replace an output that a process has open: the
// database, its -wal or its -shm.
func checkNotOpen(out string) error {
	for _, p := range []string{out, out + "-wal", out + "-shm"} {
		if pid := openBy(p); pid != 0 {
			return fmt.Errorf("%w: %s is open by process %d", ErrOutputInUse, p, pid)
		}
	}
	return nil
}
