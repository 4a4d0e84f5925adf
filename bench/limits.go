package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// raiseNoFile raises RLIMIT_NOFILE, soft and hard, to need (capped at
// /proc/sys/fs/nr_open) so that the child processes, which inherit it, can
// hold a descriptor or more per database. Raising the hard limit needs
// root (CAP_SYS_RESOURCE). It returns the soft limit in force, and an
// error saying so if that is below need.
func raiseNoFile(need uint64) (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open files limit: %w", err)
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if nrOpen, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			need = min(need, nrOpen)
		}
	}
	if lim.Cur >= need {
		return lim.Cur, nil
	}
	want := unix.Rlimit{Cur: need, Max: max(lim.Max, need)}
	err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want)
	if err != nil && lim.Max > lim.Cur {
		// Not allowed to raise the hard limit: take what it allows.
		want = unix.Rlimit{Cur: lim.Max, Max: lim.Max}
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &want) != nil {
			want = lim
		}
	} else if err != nil {
		want = lim
	}
	if want.Cur < need {
		return want.Cur, fmt.Errorf("the open files limit is %d, below the %d this run may need, and raising it failed (%v: raising the hard limit needs CAP_SYS_RESOURCE); runs with more databases than the limit allows will fail with \"too many open files\"", want.Cur, need, err)
	}
	return want.Cur, nil
}
