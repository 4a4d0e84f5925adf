package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirNotify reports, through inotify, the files created, written or moved
// into the directories of some databases.
type dirNotify struct {
	f    *os.File         // the inotify descriptor, non-blocking: Close ends a Read
	dirs map[int32]string // watch descriptor -> directory
	once sync.Once
	buf  []byte
}

// dirNotifyEvents are the events that may make a missing database appear:
// its file or its -wal created, moved in, written or closed after writing.
const dirNotifyEvents = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MODIFY | unix.IN_CLOSE_WRITE

// newDirNotify watches the directory of each database of dbs.
func newDirNotify(dbs []missingDB) (*dirNotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &dirNotify{f: os.NewFile(uintptr(fd), "inotify"), dirs: make(map[int32]string), buf: make([]byte, 64<<10)}
	for _, db := range dbs {
		dir := filepath.Dir(db.path)
		wd, err := unix.InotifyAddWatch(fd, dir, dirNotifyEvents)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("inotify %s: %w", dir, err)
		}
		w.dirs[int32(wd)] = dir
	}
	return w, nil
}

// read waits for events and returns the paths they name.
func (w *dirNotify) read() (map[string]bool, error) {
	n, err := w.f.Read(w.buf)
	if err != nil {
		return nil, err
	}
	paths := make(map[string]bool)
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
		nameEnd := off + unix.SizeofInotifyEvent + int(ev.Len)
		if nameEnd > n {
			break
		}
		name := w.buf[off+unix.SizeofInotifyEvent : nameEnd]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		if dir, ok := w.dirs[ev.Wd]; ok && len(name) > 0 {
			paths[filepath.Join(dir, string(name))] = true
		}
		off = nameEnd
	}
	return paths, nil
}

// close closes the descriptor, ending a read in progress; safe to call
// more than once.
func (w *dirNotify) close() {
	w.once.Do(func() { w.f.Close() })
}
