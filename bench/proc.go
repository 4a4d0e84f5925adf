package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Sample is one reading of a process's resources from /proc.
type Sample struct {
	RSSKB   int64 // VmRSS
	HWMKB   int64 // VmHWM: peak RSS
	AnonKB  int64 // RssAnon: heap and stacks
	PSSKB   int64 // Pss from smaps_rollup
	Threads int64
	FDs     int
	CPU     float64 // user+system CPU seconds since start
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// ReadProc samples process pid.
func ReadProc(pid int) (Sample, error) {
	var s Sample
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, err
	}
	fields := map[string]*int64{"VmRSS:": &s.RSSKB, "VmHWM:": &s.HWMKB, "RssAnon:": &s.AnonKB, "Threads:": &s.Threads}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			if p := fields[f[0]]; p != nil {
				*p, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	if rollup, err := os.ReadFile(dir + "/smaps_rollup"); err == nil {
		for line := range strings.SplitSeq(string(rollup), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				s.PSSKB, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	if ents, err := os.ReadDir(dir + "/fd"); err == nil {
		s.FDs = len(ents)
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, err
	}
	// The command name may contain spaces; fields follow the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("parse %s/stat", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("parse %s/stat", dir)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	s.CPU = float64(utime+stime) / clockTicks
	return s, nil
}

// sampleAll samples every process of pids and returns their sum. It fails
// if any of them has exited.
func sampleAll(pids []int) (Sample, error) {
	var sum Sample
	for _, pid := range pids {
		s, err := ReadProc(pid)
		if err != nil {
			return sum, fmt.Errorf("process %d: %w", pid, err)
		}
		sum.RSSKB += s.RSSKB
		sum.HWMKB += s.HWMKB
		sum.AnonKB += s.AnonKB
		sum.PSSKB += s.PSSKB
		sum.Threads += s.Threads
		sum.FDs += s.FDs
		sum.CPU += s.CPU
	}
	return sum, nil
}

// window accumulates the samples taken during the measured window.
type window struct {
	n              int64
	rss, pss, anon int64 // sums, for the averages
	peak           int64
	threads        int64
	fds            int
	first, last    Sample
	haveFirst      bool
}

// add records one sample.
func (w *window) add(s Sample) {
	if !w.haveFirst {
		w.first, w.haveFirst = s, true
	}
	w.last = s
	w.n++
	w.rss += s.RSSKB
	w.pss += s.PSSKB
	w.anon += s.AnonKB
	w.peak = max(w.peak, s.RSSKB, s.HWMKB)
	w.threads = max(w.threads, s.Threads)
	w.fds = max(w.fds, s.FDs)
}

// fill sets the memory, thread, descriptor and CPU figures of row from
// the window's samples over minutes.
func (w *window) fill(row *Row, minutes float64) {
	if w.n == 0 {
		return
	}
	row.RSSAvgKB = w.rss / w.n
	row.PSSKB = w.pss / w.n
	row.AnonKB = w.anon / w.n
	row.RSSPeakKB = w.peak
	row.Threads = w.threads
	row.FDs = w.fds
	if minutes > 0 {
		row.CPUPerMin = (w.last.CPU - w.first.CPU) / minutes
	}
}
