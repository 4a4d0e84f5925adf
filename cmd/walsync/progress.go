package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/replicate"
)

// progressLine shows how far a restore is on standard error. On a
// terminal it is one line rewritten in place; elsewhere (a log, a pipe)
// nothing is drawn and the command prints its summary at the end. Lines
// the command prints meanwhile go through println, which clears the live
// line first and draws it again after, so that the two never mix.
type progressLine struct {
	w     io.Writer        // standard error
	tty   bool             // w is a terminal: draw the live line
	now   func() time.Time // the clock; tests set a fake one
	start time.Time

	mu    sync.Mutex
	shown string // the live line on screen; "" if none (+checklocks:mu)
}

// newProgressLine returns the progress line of a command writing to w; it
// draws only if w is a terminal.
func newProgressLine(w io.Writer) *progressLine {
	return &progressLine{w: w, tty: isTerminal(w), now: time.Now, start: time.Now()}
}

// isTerminal reports whether w is a terminal (a TCGETS ioctl succeeds).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// clearLine returns the cursor to the start of the line and erases it.
const clearLine = "\r\x1b[K"

// draw replaces the live line with s (on a terminal only).
func (p *progressLine) draw(s string) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s == p.shown {
		return
	}
	fmt.Fprint(p.w, clearLine+s)
	p.shown = s
}

// println writes the line s to out (standard output or error) without
// mixing it with the live line, which is drawn again after it.
func (p *progressLine) println(out io.Writer, s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown != "" {
		fmt.Fprint(p.w, clearLine)
	}
	fmt.Fprintln(out, s)
	if p.shown != "" {
		fmt.Fprint(p.w, p.shown)
	}
}

// clear erases the live line for good.
func (p *progressLine) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown != "" {
		fmt.Fprint(p.w, clearLine)
		p.shown = ""
	}
}

// elapsed returns the time since the progress line was created.
func (p *progressLine) elapsed() time.Duration { return p.now().Sub(p.start) }

// restoreProgress is [replicate.RestoreOptions.Progress] for one restore:
// "restore: 12/40 files, 1.2 MiB/4.8 MiB, 3.1 MiB/s, ETA 2s".
func (p *progressLine) restoreProgress(pr replicate.RestoreProgress) {
	if pr.Done {
		p.clear()
		return
	}
	el := p.elapsed()
	p.draw(fmt.Sprintf("restore: %d/%d files, %s/%s, %s, ETA %s", pr.Files, pr.FilesTotal,
		fmtBytes(pr.Bytes), fmtBytes(pr.BytesTotal), fmtRate(pr.Bytes, el), fmtETA(pr.Bytes, pr.BytesTotal, el)))
}

// restoreSummary is the line printed after one restore: what it fetched,
// how long it took and at what rate.
func restoreSummary(res replicate.RestoreResult, el time.Duration) string {
	return fmt.Sprintf("restore: %d files, %s, %d requests in %s (%s)", res.Files, fmtBytes(res.Bytes),
		res.Requests, fmtDuration(el), fmtRate(res.Bytes, el))
}

// fmtBytes formats a byte count in binary units: "512 B", "1.5 KiB".
func fmtBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}

// fmtRate formats n bytes over el as a rate; "-" before any time passed.
func fmtRate(n int64, el time.Duration) string {
	if el <= 0 {
		return "- B/s"
	}
	return fmtBytes(int64(float64(n)/el.Seconds())) + "/s"
}

// fmtETA estimates the time left to reach total at the rate so far; "-"
// while nothing is known.
func fmtETA(done, total int64, el time.Duration) string {
	if done <= 0 || el <= 0 || total < done {
		return "-"
	}
	left := time.Duration(float64(el) * float64(total-done) / float64(done))
	return fmtDuration(left)
}

// fmtDuration rounds d for people: "850ms", "12.3s", "4m10s".
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
