package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walsync/walsync/internal/config"
	"github.com/walsync/walsync/replicate"
)

// restoreMissingConcurrency bounds the restores of watch
// --restore-if-missing running at the same time.
const restoreMissingConcurrency = 4

// missingDB is a database watch was given that neither exists locally nor
// has a backup: it is added once an application creates it.
type missingDB struct {
	path string // absolute
	name string // its name in the target; "" for the default
	opts replicate.DBOptions
}

// restoreMissing is watch --restore-if-missing, run before the databases
// are added. Each database given by path (DB... or a config entry's path)
// that does not exist locally, nor its -wal, is restored from the target's
// newest state, its directory created (0700) if need be. One the target
// holds no backup of is left out of args and of the config's databases and
// returned, to be added once created ([waitCreated]). For each directory
// (--dir or a config entry's dir), every database of the target whose name
// the directory would give (its file name matches the pattern, no element
// ends in -walsync) and that is missing under it is restored in place.
// Restores get the usual checks; one that fails stops watch.
func (o *watchOptions) restoreMissing(ctx context.Context, store replicate.Storage, args []string, log *slog.Logger) ([]string, []missingDB, error) {
	if !o.restoreIfMissing {
		return args, nil, nil
	}
	var dbs []missingDB // every database given by path
	var roots []dirRoot
	for _, p := range args {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, nil, fmt.Errorf("watch --restore-if-missing: %w", err)
		}
		dbs = append(dbs, missingDB{path: abs, name: o.name})
	}
	if o.dir != "" {
		roots = append(roots, dirRoot{o.dir, o.pattern})
	}
	if c := o.config.cfg; c != nil {
		for _, db := range c.Databases {
			if db.Path != "" {
				dbs = append(dbs, missingDB{path: db.Path, name: db.Name, opts: configDBOptions(db)})
			} else {
				roots = append(roots, dirRoot{db.Dir, db.Pattern})
			}
		}
	}

	taken := make(map[string]bool) // names of the databases given by path
	var waiting []missingDB
	for _, db := range dbs {
		name, err := replicate.CleanName(db.name)
		if db.name == "" {
			name, err = replicate.NameFromPath(db.path)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("watch --restore-if-missing: %s: %w", db.path, err)
		}
		taken[name] = true
		if existingOutput(db.path) != "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(db.path), 0o700); err != nil {
			return nil, nil, fmt.Errorf("watch --restore-if-missing: %w", err)
		}
		res, err := replicate.Restore(ctx, store, name, db.path, replicate.RestoreOptions{Logger: log})
		switch {
		case errors.Is(err, replicate.ErrNoBackup):
			log.Info("missing database has no backup: it is replicated once created", "path", db.path, "db", name)
			waiting = append(waiting, db)
		case err != nil:
			return nil, nil, fmt.Errorf("watch --restore-if-missing: %w", err)
		default:
			log.Info("restored missing database", "path", db.path, "db", name, "txid", res.TXID.String(), "files", res.Files)
		}
	}
	if len(roots) > 0 {
		if err := restoreMissingDirs(ctx, store, roots, taken, log); err != nil {
			return nil, nil, err
		}
	}

	// Leave out what is still missing: it is added once created.
	isWaiting := func(p string) bool {
		abs, _ := filepath.Abs(p)
		return slices.ContainsFunc(waiting, func(m missingDB) bool { return m.path == abs })
	}
	args = slices.DeleteFunc(slices.Clone(args), isWaiting)
	if c := o.config.cfg; c != nil {
		c.Databases = slices.DeleteFunc(c.Databases, func(db config.Database) bool { return db.Path != "" && isWaiting(db.Path) })
	}
	return args, waiting, nil
}

// dirRoot is a directory watch replicates: --dir, or a config entry's dir.
type dirRoot struct{ dir, pattern string }

// restoreMissingDirs restores under each root the databases of the target
// its names would give that are missing there; a name is restored under
// the first root that would give it, never when a database given by path
// has it (taken). Names that cannot be a path under the root are logged
// and left alone.
func restoreMissingDirs(ctx context.Context, store replicate.Storage, roots []dirRoot, taken map[string]bool, log *slog.Logger) error {
	backups, err := listBackups(ctx, store)
	if err != nil {
		return fmt.Errorf("watch --restore-if-missing: %w", err)
	}
	type job struct{ root, name, out string }
	var jobs []job
	for _, rt := range roots {
		dir, err := filepath.Abs(rt.dir)
		if err != nil {
			return fmt.Errorf("watch --restore-if-missing: %w", err)
		}
		var mine []backup
		for _, b := range backups {
			if !taken[b.name] && dirWouldName(b.name, rt.pattern) {
				mine = append(mine, b)
			}
		}
		for _, j := range planRestores(dir, mine) {
			if j.err != nil {
				log.Warn("backup not restored: its name cannot be a path under the directory", "dir", dir, "db", showName(j.name), "error", j.err)
				continue
			}
			taken[j.name] = true
			if existingOutput(j.out) == "" {
				jobs = append(jobs, job{dir, j.name, j.out})
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(restoreMissingConcurrency)
	for _, j := range jobs {
		g.Go(func() error {
			if err := mkdirBeneath(j.root, path.Dir(j.name)); err != nil {
				return fmt.Errorf("watch --restore-if-missing: restore %s: %w", j.name, err)
			}
			res, err := replicate.Restore(gctx, store, j.name, j.out, replicate.RestoreOptions{Logger: log})
			if err != nil {
				return fmt.Errorf("watch --restore-if-missing: %w", err)
			}
			log.Info("restored missing database", "path", j.out, "db", j.name, "txid", res.TXID.String(), "files", res.Files)
			return nil
		})
	}
	return g.Wait()
}

// dirWouldName reports whether watch --dir could give a database the name
// (its path relative to the directory): its file name matches the pattern
// and no directory on the way is walsync's own (-walsync).
func dirWouldName(name, pattern string) bool {
	elems := strings.Split(name, "/")
	for _, el := range elems[:len(elems)-1] {
		if strings.HasSuffix(el, "-walsync") {
			return false
		}
	}
	ok, _ := filepath.Match(pattern, elems[len(elems)-1])
	return ok
}

// errStopped ends the wait for missing databases.
var errStopped = errors.New("stopped")

// waitCreated adds each database of missing to r once it exists and is a
// WAL database, as inotify on its directory reports changes to it, until
// all are added or ctx is done. It returns the function that stops the
// wait and waits for it; the caller calls it before r is closed.
func waitCreated(ctx context.Context, r *replicate.Replicator, missing []missingDB, log *slog.Logger) (stop func()) {
	if len(missing) == 0 {
		return func() {}
	}
	w, err := newDirNotify(missing)
	if err != nil {
		log.Error("watch --restore-if-missing: cannot wait for the missing databases", "error", err)
		return func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stopNotify := context.AfterFunc(ctx, func() { w.close() })
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.close()
		pending := slices.Clone(missing)
		lastErr := make(map[string]string)
		try := func(changed func(string) bool) {
			pending = slices.DeleteFunc(pending, func(m missingDB) bool {
				if ctx.Err() != nil || !changed(m.path) {
					return false
				}
				if _, err := os.Stat(m.path); err != nil {
					return false // not created yet
				}
				_, err := r.AddWith(ctx, m.path, m.name, m.opts)
				switch {
				case err == nil:
					log.Info("missing database created: replicating it", "path", m.path)
					return true
				case errors.Is(err, replicate.ErrNotSQLite), errors.Is(err, replicate.ErrNotWAL):
					log.Debug("missing database not ready yet", "path", m.path, "error", err)
				case lastErr[m.path] != err.Error():
					lastErr[m.path] = err.Error()
					log.Warn("missing database created but cannot be replicated yet", "path", m.path, "error", err)
				}
				return false
			})
		}
		try(func(string) bool { return true }) // created before the watch began
		for len(pending) > 0 && ctx.Err() == nil {
			changed, err := w.read()
			if err != nil {
				if ctx.Err() == nil {
					log.Error("watch --restore-if-missing: inotify", "error", err)
				}
				return
			}
			try(func(p string) bool { return changed[p] || changed[p+"-wal"] })
		}
	})
	return func() {
		cancel(errStopped)
		stopNotify()
		w.close()
		wg.Wait()
	}
}
