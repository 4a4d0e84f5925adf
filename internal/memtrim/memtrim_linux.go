package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReleaseCode releases the resident pages of the process's clean read-only
// file mappings (code, read-only data, the function tables).
func ReleaseCode() (Stats, error) {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return Stats{}, fmt.Errorf("release code pages: %w", err)
	}
	regions, err := cleanReadOnly(smaps)
	if err != nil {
		return Stats{}, fmt.Errorf("release code pages: %w", err)
	}
	var st Stats
	for _, r := range regions {
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED)
		if errno != 0 {
			return st, fmt.Errorf("release code pages %#x-%#x %s: %w", r.start, r.end, r.path, errno)
		}
		st.Mappings++
		st.Resident += r.rss
	}
	return st, nil
}

// region is one mapping of a /proc/PID/smaps listing.
type region struct {
	start, end uintptr
	perms      string
	path       string
	rss        uint64 // bytes resident
	anon       uint64 // bytes of modified (private copy) pages
	parsedAnon bool
}

// releasable reports whether dropping r's pages cannot change what the
// process reads from it.
func (r *region) releasable() bool {
	return len(r.perms) == 4 && r.perms[0] == 'r' && r.perms[1] == '-' && r.perms[3] == 'p' &&
		strings.HasPrefix(r.path, "/") && r.parsedAnon && r.anon == 0
}

// cleanReadOnly returns the releasable mappings of a /proc/PID/smaps
// listing.
func cleanReadOnly(smaps []byte) ([]region, error) {
	var out []region
	var cur *region
	flush := func() {
		if cur != nil && cur.releasable() {
			out = append(out, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			// A mapping header: address perms offset dev inode [path].
			flush()
			r, err := parseHeader(f)
			if err != nil {
				return nil, fmt.Errorf("smaps line %q: %w", line, err)
			}
			cur = &r
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Rss:", "Anonymous:":
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("smaps line %q: %w", line, err)
			}
			if f[0] == "Rss:" {
				cur.rss = kb << 10
			} else {
				cur.anon, cur.parsedAnon = kb<<10, true
			}
		}
	}
	flush()
	return out, sc.Err()
}

// parseHeader parses the fields of a mapping's first smaps line.
func parseHeader(f []string) (region, error) {
	if len(f) < 5 {
		return region{}, fmt.Errorf("want at least 5 fields, have %d", len(f))
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if !ok || err1 != nil || err2 != nil || end <= start {
		return region{}, fmt.Errorf("bad address range %q", f[0])
	}
	r := region{start: uintptr(start), end: uintptr(end), perms: f[1]}
	if len(f) > 5 {
		r.path = strings.Join(f[5:], " ")
	}
	return r, nil
}
