package modeltest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// WALIndex is the part of a database's WAL-index header (its -shm file)
// the model watches. See https://sqlite.org/walformat.html.
type WALIndex struct {
	MxFrame   uint32 // last valid commit frame of the current generation
	NBackfill uint32 // frames copied into the database by checkpoints
	Salt1     uint32
}

// ReadWALIndex reads the WAL-index header of the database at db. It
// reports false if there is no WAL-index or it is not initialised, or if
// its two header copies did not agree in three reads (a writer was
// updating it).
func ReadWALIndex(db string) (WALIndex, bool) {
	f, err := os.Open(db + "-shm")
	if err != nil {
		return WALIndex{}, false
	}
	defer f.Close()
	var b [136]byte
	for range 3 {
		if n, _ := f.ReadAt(b[:], 0); n < len(b) {
			return WALIndex{}, false
		}
		if b[12] == 0 || !bytes.Equal(b[:48], b[48:96]) { // isInit, the two copies
			continue
		}
		le := binary.LittleEndian
		return WALIndex{MxFrame: le.Uint32(b[16:]), NBackfill: le.Uint32(b[96:]), Salt1: le.Uint32(b[32:])}, true
	}
	return WALIndex{}, false
}

// Resources are counts of what a process holds, by name ("fds",
// "threads", "goroutines").
type Resources map[string]int

// String lists the counts in a stable order.
func (r Resources) String() string {
	var parts []string
	for _, k := range []string{"fds", "threads", "goroutines"} {
		if v, ok := r[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	return strings.Join(parts, " ")
}

// ProcResources returns the open descriptors and threads of process pid
// ("self" for this one) from /proc.
func ProcResources(pid string) (Resources, error) {
	ents, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		return nil, err
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	r := Resources{"fds": len(ents)}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			r["threads"], _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return r, nil
}
