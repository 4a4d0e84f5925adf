//go:build linux

package replicate

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotify is a minimal inotify reader: one descriptor, read in batches by
// one goroutine through the runtime's poller (no thread while idle).
//
// walsync uses two kinds of watches (see watcher.go):
//   - one per directory, for names appearing, being replaced or removed, and
//     files closed after writing (a connection closing, a file copied in);
//   - one per -wal file, IN_MODIFY with IN_ONESHOT: the kernel reports the
//     first write and removes the watch, which walsync re-arms when it reads
//     the WAL. A busy database thus causes at most one event per sync
//     interval instead of two per frame written.
type inotify struct {
	f *os.File

	mu      sync.Mutex
	targets map[int32]any // by watch descriptor: *watchDir or *DB
}

// Event masks.
const (
	dirMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_CLOSE_WRITE | unix.IN_ONLYDIR
	walMask = unix.IN_MODIFY | unix.IN_ONESHOT
)

// inotifyEvent is one decoded event.
type inotifyEvent struct {
	target any // *watchDir or *DB; nil for an overflow
	mask   uint32
	name   string // entry name, for directory events
}

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	return &inotify{f: os.NewFile(uintptr(fd), "inotify"), targets: make(map[int32]any)}, nil
}

// add watches path with mask for target and returns the watch descriptor.
// Adding a path already watched replaces its mask and target.
func (in *inotify) add(path string, mask uint32, target any) (int32, error) {
	rc, err := in.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var wd int
	var serr error
	if err := rc.Control(func(fd uintptr) { wd, serr = unix.InotifyAddWatch(int(fd), path, mask) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, &os.PathError{Op: "inotify_add_watch", Path: path, Err: serr}
	}
	in.mu.Lock()
	in.targets[int32(wd)] = target
	in.mu.Unlock()
	return int32(wd), nil
}

// read blocks until events arrive and returns them; it returns an error
// once the descriptor is closed.
func (in *inotify) read(buf []byte) ([]inotifyEvent, error) {
	n, err := in.f.Read(buf)
	if err != nil {
		return nil, err
	}
	var evs []inotifyEvent
	in.mu.Lock()
	defer in.mu.Unlock()
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		end := off + unix.SizeofInotifyEvent + int(raw.Len)
		if end > n {
			break
		}
		name := buf[off+unix.SizeofInotifyEvent : end]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		ev := inotifyEvent{mask: raw.Mask, name: string(name)}
		if raw.Mask&unix.IN_Q_OVERFLOW == 0 {
			ev.target = in.targets[raw.Wd]
		}
		if raw.Mask&unix.IN_IGNORED != 0 {
			delete(in.targets, raw.Wd) // the watch is gone (oneshot fired, or file removed)
		} else {
			evs = append(evs, ev)
		}
		off = end
	}
	return evs, nil
}

// close stops the reader.
func (in *inotify) close() error {
	err := in.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
