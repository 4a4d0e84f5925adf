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
