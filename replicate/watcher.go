package replicate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// watcher turns inotify events into scheduler notifications, with no
// polling: a watch per directory holding databases reports names created,
// replaced or removed (a new -wf, a database renamed over, new databases in
// the trees given to WatchDir), and a one-shot watch per -wal file reports
// its first write after each sync (armWAL re-arms it).
type watcher struct {
	r *Replicator

	mu    sync.Mutex
	in    *inotify               // +checklocks:mu; created on first use
	dirs  map[string]*watchDir   // +checklocks:mu; by directory path
	roots map[string]*watchRoot  // +checklocks:mu; WatchDir roots
	cands map[string]*watchRoot  // +checklocks:mu; files that may become databases
	retry map[string]*time.Timer // +checklocks:mu; candidates that failed, retried with a backoff
	fails map[string]int         // +checklocks:mu; consecutive failures per candidate
	ctx   context.Context        // +checklocks:mu; of run, for retries
}

// watchDir is one watched directory.
type watchDir struct {
	path string
	dbs  map[string]*DB // by base name
	root *watchRoot     // set if the directory is under a WatchDir root
}

// watchRoot is a directory tree whose matching databases are picked up.
type watchRoot struct {
	dir     string
	pattern string
	opts    DBOptions // of the databases under it
}

func newWatcher(r *Replicator) *watcher {
	return &watcher{r: r, dirs: make(map[string]*watchDir), roots: make(map[string]*watchRoot),
		cands: make(map[string]*watchRoot), retry: make(map[string]*time.Timer), fails: make(map[string]int)}
}

// add starts watching the directory of d.
func (w *watcher) add(d *DB) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := w.watchLocked(filepath.Dir(d.path))
	if err != nil {
		return err
	}
	wd.dbs[filepath.Base(d.path)] = d
	if _, err := w.in.add(d.walPath, walMask, d); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// underRoot reports whether d was added by a WatchDir root, which adds it
// again if a database reappears at its path.
func (w *watcher) underRoot(d *DB) bool { return d.viaDir }

// remove forgets d; the directory watch stays for the other databases and
// for a database created again under the same path.
func (w *watcher) remove(d *DB) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wd := w.dirs[filepath.Dir(d.path)]; wd != nil && wd.dbs[filepath.Base(d.path)] == d {
		delete(wd.dbs, filepath.Base(d.path))
	}
}

// watchLocked adds an inotify watch on dir. Caller holds w.mu.
func (w *watcher) watchLocked(dir string) (*watchDir, error) {
	if wd := w.dirs[dir]; wd != nil {
		return wd, nil
	}
	if err := w.initLocked(); err != nil {
		return nil, err
	}
	wd := &watchDir{path: dir, dbs: make(map[string]*DB)}
	if _, err := w.in.add(dir, dirMask, wd); err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	w.dirs[dir] = wd
	return wd, nil
}

func (w *watcher) initLocked() error {
	if w.in != nil {
		return nil
	}
	in, err := newInotify()
	if err != nil {
		return err
	}
	w.in = in
	return nil
}

// armWAL (re-)arms the one-shot watch on d's WAL. A missing WAL is not an
// error: its creation shows up in the directory watch.
func (w *watcher) armWAL(d *DB) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.in == nil {
		return nil // not watching (a one-off command such as snapshot)
	}
	_, err := w.in.add(d.walPath, walMask, d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// WatchDir replicates every database under dir (recursively) whose base
// name matches pattern (path.Match syntax), now and as they appear while
// Run is active. Names are the paths relative to dir. Files that are not
// (yet) WAL-mode SQLite databases are retried when they change.
func (r *Replicator) WatchDir(ctx context.Context, dir, pattern string) error {
	return r.watchDir(ctx, dir, pattern, DBOptions{})
}

// watchDir is WatchDir with the databases' overrides.
func (r *Replicator) watchDir(ctx context.Context, dir, pattern string, o DBOptions) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := filepath.Match(pattern, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", pattern, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", abs)
	}
	root := &watchRoot{dir: abs, pattern: pattern, opts: o}
	r.watch.mu.Lock()
	r.watch.roots[abs] = root
	r.watch.mu.Unlock()
	return r.watch.scan(ctx, root, abs)
}

// scan watches dir and its subdirectories and adds the databases in them.
// A matching file that is not a usable database is remembered and retried;
// only a directory that cannot be read or watched is an error.
func (w *watcher) scan(ctx context.Context, root *watchRoot, dir string) error {
	return filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() {
			if p != dir && strings.HasSuffix(de.Name(), "-walsync") {
				return filepath.SkipDir // walsync's own spool and records
			}
			w.mu.Lock()
			wd, err := w.watchLocked(p)
			if err == nil {
				wd.root = root
			}
			w.mu.Unlock()
			return err
		}
		if !root.matches(p) {
			return nil
		}
		// A file that cannot be replicated (not a database yet, a name
		// the target cannot hold, a lock held too long) is reported and
		// retried; it never stops the others.
		w.tryAdd(ctx, root, p)
		return nil
	})
}

func (root *watchRoot) matches(p string) bool {
	base := filepath.Base(p)
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if strings.HasSuffix(base, suffix) {
			return false
		}
	}
	ok, _ := filepath.Match(root.pattern, base)
	return ok
}

// tryAdd adds the database at p under its name relative to the root. A file
// that is not yet a WAL-mode database is kept as a candidate, retried when
// it changes; one that failed otherwise (a lock held too long, descriptors
// exhausted) is also retried on a timer with a growing delay.
func (w *watcher) tryAdd(ctx context.Context, root *watchRoot, p string) error {
	w.mu.Lock()
	if wd := w.dirs[filepath.Dir(p)]; wd != nil && wd.dbs[filepath.Base(p)] != nil {
		w.mu.Unlock()
		return nil // already replicated
	}
	w.mu.Unlock()
	rel, err := filepath.Rel(root.dir, p)
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(p)
	_, err = w.r.add(ctx, abs, filepath.ToSlash(rel), nil, true, root.opts)
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := w.retry[p]; t != nil {
		t.Stop()
		delete(w.retry, p)
	}
	switch {
	case err == nil:
		delete(w.cands, p)
		delete(w.fails, p)
	case errors.Is(err, ErrNotSQLite) || errors.Is(err, ErrNotWAL):
		w.cands[p] = root
		w.r.log.Debug("not a WAL database yet", "path", p, "error", err)
	case errors.Is(err, ErrBadName):
		delete(w.cands, p)
		w.r.log.Warn("cannot replicate database: its name cannot be used in the target", "path", p, "error", err)
	default:
		w.cands[p] = root
		w.fails[p]++
		delay := min(time.Second<<min(w.fails[p]-1, 6), time.Minute)
		w.r.log.Warn("cannot replicate database yet, will retry", "path", p, "error", err, "retry_in", delay)
		if w.ctx != nil && w.ctx.Err() == nil {
			rctx := w.ctx
			w.retry[p] = time.AfterFunc(delay, func() { w.tryAdd(rctx, root, p) })
		}
	}
	return err
}

// run handles inotify events until ctx is done.
func (w *watcher) run(ctx context.Context) {
	w.mu.Lock()
	err := w.initLocked()
	in := w.in
	w.ctx = ctx
	w.mu.Unlock()
	if err != nil {
		w.r.log.Error("inotify", "error", err)
		<-ctx.Done()
		return
	}
	stop := context.AfterFunc(ctx, func() { w.close() })
	defer stop()
	buf := make([]byte, 16<<10)
	for {
		evs, err := in.read(buf)
		if err != nil {
			if ctx.Err() == nil {
				w.r.log.Error("inotify", "error", err)
			}
			return
		}
		for _, ev := range evs {
			w.handle(ctx, ev)
		}
	}
}

// handle maps one event to the database it concerns.
func (w *watcher) handle(ctx context.Context, ev inotifyEvent) {
	switch t := ev.target.(type) {
	case *DB:
		w.r.sched.notify(t)
		return
	case nil:
		if ev.mask&unix.IN_Q_OVERFLOW != 0 {
			w.r.log.Warn("inotify queue overflow: checking every database")
			for _, d := range w.r.DBs() {
				w.r.sched.notify(d)
			}
		}
		return
	case *watchDir:
		w.handleDir(ctx, t, ev)
	}
}

// handleDir handles a name created, replaced or removed in a directory.
func (w *watcher) handleDir(ctx context.Context, wd *watchDir, ev inotifyEvent) {
	full := filepath.Join(wd.path, ev.name)
	name := ev.name
	for _, suffix := range []string{"-wal", "-shm"} {
		if n, ok := strings.CutSuffix(name, suffix); ok {
			name = n
			break
		}
	}
	w.mu.Lock()
	d := wd.dbs[name]
	cand := w.cands[filepath.Join(wd.path, name)]
	root := wd.root
	w.mu.Unlock()

	switch {
	case d != nil && ev.mask&unix.IN_CLOSE_WRITE != 0:
		// A connection closed: within the interval, or at once if it was
		// the application's last (walsync then empties the WAL, so that
		// the file can be replaced while the application is stopped).
		if d.appGone() {
			d.closeNow(ctx)
			w.r.sched.notifyNow(d)
		} else {
			w.r.sched.notify(d)
		}
	case d != nil:
		// A name created, replaced or removed: the pin must follow at
		// once (a new WAL, a file replaced while its old WAL is left).
		w.r.sched.notifyNow(d)
	case cand != nil:
		w.tryAdd(ctx, cand, filepath.Join(wd.path, name))
	case root != nil && ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0:
		if ev.mask&unix.IN_ISDIR != 0 {
			if err := w.scan(ctx, root, full); err != nil {
				w.r.log.Warn("watch new directory", "path", full, "error", err)
			}
		} else if root.matches(full) {
			w.tryAdd(ctx, root, full)
		}
	}
}

// close stops inotify and the candidates' retries.
func (w *watcher) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, t := range w.retry {
		t.Stop()
		delete(w.retry, p)
	}
	if w.in == nil {
		return nil
	}
	err := w.in.close()
	w.in = nil
	return err
}
