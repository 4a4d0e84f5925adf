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

	"github.com/fsnotify/fsnotify"
)

// watcher turns inotify events into scheduler notifications. It watches
// directories, not files: one watch per directory holding databases, so the
// kernel reports every write to a -wal file, the creation of -wal and -shm
// files and the replacement of a database, with no polling. It also finds
// new databases in the directory trees given to WatchDir.
type watcher struct {
	r *Replicator

	mu    sync.Mutex
	fsw   *fsnotify.Watcher     // +checklocks:mu; created on first use
	dirs  map[string]*watchDir  // +checklocks:mu; by directory path
	roots map[string]*watchRoot // +checklocks:mu; WatchDir roots
	cands map[string]*watchRoot // +checklocks:mu; files that may become databases
}

// watchDir is one watched directory.
type watchDir struct {
	dbs  map[string]*DB // by base name
	root *watchRoot     // set if the directory is under a WatchDir root
}

// watchRoot is a directory tree whose matching databases are picked up.
type watchRoot struct {
	dir     string
	pattern string
}

func newWatcher(r *Replicator) *watcher {
	return &watcher{r: r, dirs: make(map[string]*watchDir), roots: make(map[string]*watchRoot), cands: make(map[string]*watchRoot)}
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
	return nil
}

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
	if w.fsw == nil {
		fsw, err := fsnotify.NewBufferedWatcher(1024)
		if err != nil {
			return nil, fmt.Errorf("inotify: %w", err)
		}
		w.fsw = fsw
	}
	if err := w.fsw.Add(dir); err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	wd := &watchDir{dbs: make(map[string]*DB)}
	w.dirs[dir] = wd
	return wd, nil
}

// WatchDir replicates every database under dir (recursively) whose base
// name matches pattern (path.Match syntax), now and as they appear while
// Run is active. Names are the paths relative to dir. Files that are not
// (yet) WAL-mode SQLite databases are retried when they change.
func (r *Replicator) WatchDir(ctx context.Context, dir, pattern string) error {
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
	root := &watchRoot{dir: abs, pattern: pattern}
	r.watch.mu.Lock()
	r.watch.roots[abs] = root
	r.watch.mu.Unlock()
	return r.watch.scan(ctx, root, abs, true)
}

// scan watches dir and its subdirectories and adds the databases in them.
// At startup (strict) a matching file that is not a usable database is an
// error; later it is remembered and retried.
func (w *watcher) scan(ctx context.Context, root *watchRoot, dir string, strict bool) error {
	return filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() {
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
		err = w.tryAdd(ctx, root, p)
		if err != nil && strict && !errors.Is(err, ErrNotSQLite) && !errors.Is(err, ErrNotWAL) {
			return err
		}
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
// that is not yet a WAL-mode database is kept as a candidate.
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
	_, err = w.r.Add(ctx, p, filepath.ToSlash(rel))
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil && (errors.Is(err, ErrNotSQLite) || errors.Is(err, ErrNotWAL)) {
		w.cands[p] = root
		w.r.log.Debug("not a WAL database yet", "path", p, "error", err)
		return err
	}
	delete(w.cands, p)
	if err != nil {
		w.r.log.Error("cannot replicate database", "path", p, "error", err)
	}
	return err
}

// run handles inotify events until ctx is done.
func (w *watcher) run(ctx context.Context) {
	w.mu.Lock()
	fsw := w.fsw
	w.mu.Unlock()
	if fsw == nil {
		<-ctx.Done()
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-fsw.Events:
			if !ok {
				return
			}
			w.handle(ctx, ev)
		case err, ok := <-fsw.Errors:
			if !ok {
				return
			}
			w.r.log.Warn("inotify", "error", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				for _, d := range w.r.DBs() { // events were lost: look at everything
					w.r.sched.notify(d)
				}
			}
		}
	}
}

// handle maps one event to the database it concerns.
func (w *watcher) handle(ctx context.Context, ev fsnotify.Event) {
	dir, base := filepath.Split(ev.Name)
	dir = filepath.Clean(dir)
	w.mu.Lock()
	wd := w.dirs[dir]
	var d *DB
	if wd != nil {
		name := base
		for _, suffix := range []string{"-wal", "-shm"} {
			if n, ok := strings.CutSuffix(base, suffix); ok {
				name = n
				break
			}
		}
		d = wd.dbs[name]
	}
	cand := w.cands[ev.Name]
	if cand == nil {
		if n, ok := strings.CutSuffix(ev.Name, "-wal"); ok {
			cand = w.cands[n]
			if cand != nil {
				ev.Name = n
			}
		}
	}
	w.mu.Unlock()

	switch {
	case d != nil:
		w.r.sched.notify(d)
	case cand != nil:
		w.tryAdd(ctx, cand, ev.Name)
	case wd != nil && wd.root != nil && ev.Has(fsnotify.Create):
		fi, err := os.Lstat(ev.Name)
		if err != nil {
			return
		}
		if fi.IsDir() {
			if err := w.scan(ctx, wd.root, ev.Name, false); err != nil {
				w.r.log.Warn("watch new directory", "path", ev.Name, "error", err)
			}
		} else if fi.Mode().IsRegular() && wd.root.matches(ev.Name) {
			w.tryAdd(ctx, wd.root, ev.Name)
		}
	}
}

// close stops inotify.
func (w *watcher) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fsw == nil {
		return nil
	}
	err := w.fsw.Close()
	w.fsw = nil
	return err
}
