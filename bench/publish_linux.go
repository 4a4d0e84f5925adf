//go:build linux

package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// publishWatcher is the durability clock of a file:// target: it records
// when each LTX file gets its name below a directory, with inotify, and
// watches every directory below it as it appears. Both tools write an
// object to a temporary or unnamed file, fsync it, then give it its name
// (walsync: linkat, IN_CREATE; Litestream: rename, IN_MOVED_TO), then
// fsync the directory: the name appearing is the same step in both.
//
// An event is stamped when the watcher reads it, so a time is late by the
// watcher's wake-up, never early. A file found by listing a directory that
// was just created (it appeared before the watch on it was in place) is
// stamped with the time of the listing.
type publishWatcher struct {
	root string
	f    *os.File // the inotify descriptor, non-blocking: read through the poller
	done chan struct{}

	mu   sync.Mutex
	dirs map[int32]string     // by watch descriptor: the directory, relative to root, slash-separated
	seen map[string]time.Time // by path relative to root: when it was first seen
	err  error                // the first failure (a lost event, a watch not added)

	stopped bool // the descriptor is closed: directories are listed, not watched
}

// publishMask is what a watched directory reports: names created there or
// moved there.
const publishMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_ONLYDIR

// startPublishWatcher creates root if needed and starts watching it.
func startPublishWatcher(root string) (*publishWatcher, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("watch target: %w", err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch target: inotify: %w", err)
	}
	w := &publishWatcher{root: root, f: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{}),
		dirs: map[int32]string{}, seen: map[string]time.Time{}}
	w.mu.Lock()
	err = w.addDir("", time.Now())
	w.mu.Unlock()
	if err != nil {
		w.f.Close()
		return nil, fmt.Errorf("watch target: %w", err)
	}
	go w.loop()
	return w, nil
}

// name describes the clock.
func (w *publishWatcher) name() string { return "inotify" }

// stop ends the watch and returns when each LTX file below root was first
// seen, by its slash-separated path relative to root. Every name created
// before stop was called is in it.
func (w *publishWatcher) stop() (map[string]time.Time, error) {
	derr := w.drain()
	// Close under mu: the loop may be handling a batch it read before the
	// drain, and may still hold one; both then list new directories
	// without watching them (everything created before stop is seen).
	w.mu.Lock()
	w.stopped = true
	w.f.Close()
	w.mu.Unlock()
	<-w.done
	if derr != nil {
		w.mu.Lock()
		w.fail(fmt.Errorf("watch target: %w", derr))
		w.mu.Unlock()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen, w.err
}

// addDir watches the directory rel and notes what it already holds: files
// at now, directories by watching them too. Its caller holds w.mu.
func (w *publishWatcher) addDir(rel string, now time.Time) error {
	abs := filepath.Join(w.root, filepath.FromSlash(rel))
	if !w.stopped {
		rc, err := w.f.SyscallConn()
		if err != nil {
			return err
		}
		var wd int
		var serr error
		if err := rc.Control(func(fd uintptr) { wd, serr = unix.InotifyAddWatch(int(fd), abs, publishMask) }); err != nil {
			return err
		}
		if errors.Is(serr, unix.ENOENT) {
			return nil // removed since it was created
		}
		if serr != nil {
			return &os.PathError{Op: "inotify_add_watch", Path: abs, Err: serr}
		}
		w.dirs[int32(wd)] = rel
	}
	entries, err := os.ReadDir(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := w.note(path.Join(rel, e.Name()), e.IsDir(), now); err != nil {
			return err
		}
	}
	return nil
}

// note records a name that appeared at now: an LTX file, or a directory
// to watch. Other names (temporary files, dot-directories) are ignored.
// Its caller holds w.mu.
func (w *publishWatcher) note(rel string, isDir bool, now time.Time) error {
	base := path.Base(rel)
	switch {
	case strings.HasPrefix(base, "."):
	case isDir:
		return w.addDir(rel, now)
	case strings.HasSuffix(base, ".ltx"):
		if _, ok := w.seen[rel]; !ok {
			w.seen[rel] = now
		}
	}
	return nil
}

// fail keeps the first failure. Its caller holds w.mu.
func (w *publishWatcher) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// loop reads events until the descriptor is closed.
func (w *publishWatcher) loop() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.mu.Lock()
				w.fail(fmt.Errorf("watch target: %w", err))
				w.mu.Unlock()
			}
			return
		}
		now := time.Now()
		w.mu.Lock()
		w.handle(buf[:n], now)
		w.mu.Unlock()
	}
}

// drain handles the events already queued, without waiting for more:
// every change made before it was called is then recorded.
func (w *publishWatcher) drain() error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		var n int
		var rerr error
		if err := rc.Control(func(fd uintptr) { n, rerr = unix.Read(int(fd), buf) }); err != nil {
			return err
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		now := time.Now()
		w.mu.Lock()
		w.handle(buf[:n], now)
		w.mu.Unlock()
	}
}

// handle records the events in b, read at now. Its caller holds w.mu.
func (w *publishWatcher) handle(b []byte, now time.Time) {
	for off := 0; off+unix.SizeofInotifyEvent <= len(b); {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&b[off]))
		end := off + unix.SizeofInotifyEvent + int(raw.Len)
		if end > len(b) {
			return
		}
		name := strings.TrimRight(string(b[off+unix.SizeofInotifyEvent:end]), "\x00")
		off = end
		switch {
		case raw.Mask&unix.IN_Q_OVERFLOW != 0:
			w.fail(errors.New("watch target: inotify queue overflow, events lost"))
		case raw.Mask&unix.IN_IGNORED != 0:
			delete(w.dirs, raw.Wd)
		case raw.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			dir, ok := w.dirs[raw.Wd]
			if !ok || name == "" {
				continue
			}
			if err := w.note(path.Join(dir, name), raw.Mask&unix.IN_ISDIR != 0, now); err != nil {
				w.fail(fmt.Errorf("watch target: %w", err))
			}
		}
	}
}
