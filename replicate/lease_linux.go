package replicate

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// procIdentity returns what tells process pid of this host apart from any
// other, past or future: the boot ID, the PID namespace and the process's
// start time in clock ticks since boot. Empty values mean unknown.
func procIdentity(pid int) (boot, pidns string, start uint64) {
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		boot = strings.TrimSpace(string(b))
	}
	pidns, _ = os.Readlink("/proc/self/ns/pid")
	start, _ = procStart(pid)
	return boot, pidns, start
}

// procStart returns the start time of process pid, in clock ticks since
// boot (field 22 of /proc/PID/stat), or an error matching fs.ErrNotExist if
// there is no such process.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, errors.New("unexpected /proc stat format")
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// processAlive reports whether the holder may still be running: false only
// when it is a process of this boot and PID namespace that no longer exists
// (its PID is free or taken by a process started at another time).
func processAlive(h LeaseHolder) bool {
	boot, pidns, _ := procIdentity(0)
	if h.Boot == "" || h.PIDNS == "" || h.ProcStart == 0 || h.Boot != boot || h.PIDNS != pidns {
		return true // another host, container or boot: only the expiry tells
	}
	start, err := procStart(h.PID)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	return err != nil || start == h.ProcStart
}
