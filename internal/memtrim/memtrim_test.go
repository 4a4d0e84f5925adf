//go:build linux

package memtrim

import (
	"os"
	"testing"
)

func TestCleanReadOnly(t *testing.T) {
	smaps, err := os.ReadFile("testdata/smaps")
	if err != nil {
		t.Fatal(err)
	}
	got, err := cleanReadOnly(smaps)
	if err != nil {
		t.Fatal(err)
	}
	want := []region{
		{start: 0x400000, end: 0xa87000, path: "/usr/local/bin/walsync", rss: 4300 << 10},
		{start: 0xa87000, end: 0x11ae000, path: "/usr/local/bin/walsync", rss: 4700 << 10},
		{start: 0x7f3c1bbc8000, end: 0x7f3c1bbee000, path: "/usr/lib/x86_64-linux-gnu/libc.so.6", rss: 152 << 10},
		{start: 0x7f3c1bbee000, end: 0x7f3c1bd44000, path: "/usr/lib/x86_64-linux-gnu/libc.so.6", rss: 968 << 10},
		{start: 0x7f3c1bdb0000, end: 0x7f3c1bdc0000, path: "/opt/my lib/plugin.so", rss: 64 << 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d regions, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.start != w.start || g.end != w.end || g.path != w.path || g.rss != w.rss || g.anon != 0 {
			t.Errorf("region %d = %#x-%#x %q rss %d anon %d, want %#x-%#x %q rss %d anon 0",
				i, g.start, g.end, g.path, g.rss, g.anon, w.start, w.end, w.path, w.rss)
		}
	}
}

func TestCleanReadOnlyRejects(t *testing.T) {
	for _, tc := range []struct{ name, smaps string }{
		{"bad range", "zz-00 r--p 0 00:00 1 /bin/x\nAnonymous: 0 kB\n"},
		{"inverted range", "2000-1000 r--p 0 00:00 1 /bin/x\nAnonymous: 0 kB\n"},
		{"short header", "1000-2000 r--p\n"},
		{"bad number", "1000-2000 r--p 0 00:00 1 /bin/x\nRss: lots kB\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := cleanReadOnly([]byte(tc.smaps)); err == nil {
				t.Fatalf("no error, regions %+v", got)
			}
		})
	}
	// A mapping whose Anonymous line is missing is never released: its
	// pages could be private copies.
	got, err := cleanReadOnly([]byte("1000-2000 r-xp 0 00:00 1 /bin/x\nRss: 4 kB\n"))
	if err != nil || len(got) != 0 {
		t.Fatalf("got %+v, %v; want nothing", got, err)
	}
}

// TestReleaseCode releases this test binary's code pages and checks that
// they were resident before, are mostly gone after, and that the process
// keeps running the released code.
func TestReleaseCode(t *testing.T) {
	before := residentClean(t)
	if before == 0 {
		t.Fatal("no resident clean read-only file pages before release")
	}
	st, err := ReleaseCode()
	if err != nil {
		t.Fatal(err)
	}
	after := residentClean(t)
	if st.Mappings == 0 || st.Resident == 0 {
		t.Fatalf("stats %+v: released nothing", st)
	}
	// Code the process runs faults straight back in (how much depends on
	// what ran before: about 1.7 MiB here), so at least a quarter must go.
	if before-after < before/4 {
		t.Fatalf("resident clean read-only pages %d KiB before, %d KiB after: not released", before>>10, after>>10)
	}
	// The process still runs: code faults back in from the page cache.
	if _, err := cleanReadOnly([]byte("1000-2000 r-xp 0 00:00 1 /bin/x\nAnonymous: 0 kB\n")); err != nil {
		t.Fatal(err)
	}
	t.Logf("released %d mappings, %d KiB resident before, %d KiB after", st.Mappings, before>>10, after>>10)
}

// residentClean sums the resident bytes of the releasable mappings.
func residentClean(t *testing.T) uint64 {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	regions, err := cleanReadOnly(smaps)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, r := range regions {
		n += r.rss
	}
	return n
}

func FuzzCleanReadOnly(f *testing.F) {
	if b, err := os.ReadFile("testdata/smaps"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("1000-2000 r-xp 0 00:00 1 /bin/x\nAnonymous: 0 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		regions, err := cleanReadOnly(b)
		if err != nil {
			return
		}
		for _, r := range regions {
			if !r.releasable() || r.end <= r.start {
				t.Fatalf("released an unreleasable region %+v", r)
			}
		}
	})
}
