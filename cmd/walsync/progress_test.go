package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/replicate"
)

// fakeClock returns a clock at start that the test moves.
func fakeClock(start time.Time) (now func() time.Time, advance func(time.Duration)) {
	t := start
	return func() time.Time { return t }, func(d time.Duration) { t = t.Add(d) }
}

// TestProgressLine: on a terminal, the live line is rewritten in place
// (\r and erase), lines printed meanwhile clear it and draw it again, and
// the last call clears it; elsewhere nothing is drawn.
func TestProgressLine(t *testing.T) {
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	t.Run("OK", func(t *testing.T) {
		var term, stdout bytes.Buffer
		now, advance := fakeClock(start)
		p := &progressLine{w: &term, tty: true, now: now, start: start}

		advance(2 * time.Second)
		p.restoreProgress(replicate.RestoreProgress{Files: 3, FilesTotal: 12, Bytes: 1 << 20, BytesTotal: 4 << 20})
		p.restoreProgress(replicate.RestoreProgress{Files: 3, FilesTotal: 12, Bytes: 1 << 20, BytesTotal: 4 << 20}) // same line: not drawn again
		p.println(&stdout, "restored a")
		advance(2 * time.Second)
		p.restoreProgress(replicate.RestoreProgress{Files: 12, FilesTotal: 12, Bytes: 4 << 20, BytesTotal: 4 << 20})
		p.restoreProgress(replicate.RestoreProgress{Files: 12, FilesTotal: 12, Bytes: 4 << 20, BytesTotal: 4 << 20, Done: true})

		first := "restore: 3/12 files, 1.0 MiB/4.0 MiB, 512.0 KiB/s, ETA 6s"
		last := "restore: 12/12 files, 4.0 MiB/4.0 MiB, 1.0 MiB/s, ETA 0s"
		want := clearLine + first + clearLine + first + clearLine + last + clearLine
		if got := term.String(); got != want {
			t.Errorf("terminal got\n%q\nwant\n%q", got, want)
		}
		if got, want := stdout.String(), "restored a\n"; got != want {
			t.Errorf("stdout %q, want %q", got, want)
		}
	})
	t.Run("NotATerminal", func(t *testing.T) {
		var w, stdout bytes.Buffer
		now, advance := fakeClock(start)
		p := &progressLine{w: &w, tty: false, now: now, start: start}
		advance(time.Second)
		p.restoreProgress(replicate.RestoreProgress{Files: 1, FilesTotal: 2, Bytes: 10, BytesTotal: 20})
		p.println(&stdout, "restored a")
		p.restoreProgress(replicate.RestoreProgress{Done: true})
		if w.Len() != 0 {
			t.Errorf("drew %q, want nothing when not a terminal", w.String())
		}
		if got, want := stdout.String(), "restored a\n"; got != want {
			t.Errorf("stdout %q, want %q", got, want)
		}
	})
	t.Run("NotATerminalFile", func(t *testing.T) {
		if isTerminal(&bytes.Buffer{}) {
			t.Error("a buffer is a terminal")
		}
		f, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		if isTerminal(f) {
			t.Error("a regular file is a terminal")
		}
	})
}

// TestRestoreLines: the formats of the summary lines and of the live line
// of --all, and their units.
func TestRestoreLines(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{restoreSummary(replicate.RestoreResult{Files: 3, Bytes: 3 << 20, Requests: 5}, 1500*time.Millisecond),
			"restore: 3 files, 3.0 MiB, 5 requests in 1.5s (2.0 MiB/s)"},
		{restoreSummary(replicate.RestoreResult{Files: 1, Bytes: 100, Requests: 2}, 0), "restore: 1 files, 100 B, 2 requests in 0s (- B/s)"},
		{restoreAllLine(250, 1000, 2, 10<<30, 10*time.Second), "restore --all: 250/1000 databases, 2 failed, 10.0 GiB, 1.0 GiB/s, ETA 30s"},
		{restoreAllLine(0, 1000, 0, 0, 0), "restore --all: 0/1000 databases, 0 failed, 0 B, - B/s, ETA -"},
		{fmtDuration(4*time.Minute + 10400*time.Millisecond), "4m10s"},
		{fmtDuration(850400 * time.Microsecond), "850ms"},
		{fmtBytes(1023), "1023 B"},
		{fmtBytes(1536), "1.5 KiB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	r := restoreJSON{Name: "a\x1b[2Jb", Status: "failed", Reason: "x"}
	if got := restoreAllText(r); strings.ContainsRune(got, '\x1b') {
		t.Errorf("line %q carries the name's escape sequence to the terminal", got)
	}
}
