package bench

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Progress reports what the bench is doing. On a terminal it is one line
// rewritten in place; elsewhere (a file, a pipe, CI) it is plain lines and
// the per-second status updates are left out. A nil *Progress reports
// nothing.
type Progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	shown bool // a line is on screen without its newline
}

// NewProgress returns a Progress writing to w, as one updating line if w
// is a terminal.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// Linef reports a step: a new plain line, or the terminal line.
func (p *Progress) Linef(format string, args ...any) { p.write(false, format, args...) }

// Statusf reports a transient status; only shown on a terminal.
func (p *Progress) Statusf(format string, args ...any) {
	if p != nil && p.tty {
		p.write(false, format, args...)
	}
}

// Notef reports something that must stay visible (a warning, a failure).
func (p *Progress) Notef(format string, args ...any) { p.write(true, format, args...) }

// Done clears the terminal line.
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

func (p *Progress) write(keep bool, format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if !p.tty {
		fmt.Fprintln(p.w, msg)
		return
	}
	if keep {
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", msg)
		p.shown = false
		return
	}
	if width := termWidth(p.w); width > 1 && len(msg) >= width {
		msg = msg[:width-1]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", msg)
	p.shown = true
}

// termWidth returns the width of the terminal w, or 0.
func termWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
