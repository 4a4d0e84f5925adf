package vfs

import (
	"context"
	"errors"
	"strings"

	"github.com/ncruces/go-sqlite3/util/vfsutil"
	sqlite3vfs "github.com/ncruces/go-sqlite3/vfs"

	"github.com/walsync/walsync/internal/inapp"
	"github.com/walsync/walsync/replicate"
)

// walsyncVFS wraps the base VFS. It wraps main database and WAL files and
// passes every other file (journals, temporary files) through untouched.
type walsyncVFS struct {
	sqlite3vfs.VFS
	v *VFS
}

func (w *walsyncVFS) Open(name string, flags sqlite3vfs.OpenFlag) (sqlite3vfs.File, sqlite3vfs.OpenFlag, error) {
	return vfsutil.WrapOpen(w.VFS, name, flags)
}

func (w *walsyncVFS) OpenFilename(name *sqlite3vfs.Filename, flags sqlite3vfs.OpenFlag) (sqlite3vfs.File, sqlite3vfs.OpenFlag, error) {
	f, flags, err := vfsutil.WrapOpenFilename(w.VFS, name, flags)
	if err != nil || name == nil {
		return f, flags, err
	}
	switch {
	case flags&sqlite3vfs.OPEN_MAIN_DB != 0:
		mf := &mainFile{File: f, v: w.v, path: name.String()}
		mf.entry = w.v.open(mf.path)
		if err := mf.entry.codec.setKey(name.URIParameters()); err != nil {
			w.v.close(mf.path, mf.entry)
			f.Close()
			return nil, flags, err
		}
		return mf, flags, nil
	case flags&sqlite3vfs.OPEN_WAL != 0:
		mf, ok := vfsutil.UnwrapFile[*mainFile](name.DatabaseFile())
		if !ok {
			return f, flags, nil // not through this VFS: nothing to replicate
		}
		w.v.register(mf)
		return &walFile{File: f, entry: mf.entry}, flags, nil
	}
	return f, flags, nil
}

// Delete runs the WAL-reset gate before SQLite deletes a WAL (the last
// connection closing), then deletes it.
func (w *walsyncVFS) Delete(name string, syncDir bool) error {
	if path, ok := strings.CutSuffix(name, "-wal"); ok {
		if e := w.v.lookup(path); e != nil {
			if h := e.hooks(); h != nil {
				h.BeforeWALReset(nil)
			}
		}
	}
	return w.VFS.Delete(name, syncDir)
}

// open counts a main-database handle of the database at path and returns
// its entry, creating it for the first handle. If the replicator released
// the database meanwhile, the entry is registered again at the next WAL
// open.
func (v *VFS) open(path string) *dbEntry {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.dbs[path]
	if e == nil {
		e = &dbEntry{codec: newCodec(v.opts.Encryption)}
		v.dbs[path] = e
	}
	e.opens++
	if h := e.hooks(); h != nil && !h.Opened() {
		e.link.Store(nil)
	}
	return e
}

// close counts a main-database handle closed. After the last one the
// entry goes, and the replicator releases the database once everything
// captured is uploaded.
func (v *VFS) close(path string, e *dbEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e.opens--
	if e.opens > 0 {
		return
	}
	if v.dbs[path] == e {
		delete(v.dbs, path)
	}
	if h := e.hooks(); h != nil {
		h.Closed()
	}
}

// lookup returns the entry of the database at path, or nil.
func (v *VFS) lookup(path string) *dbEntry {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.dbs[path]
}

// register adds the database of mf to the replicator the first time one of
// its connections opens the WAL (the database is in WAL mode by then). It
// does no network I/O: the replicator reads the target on its first sync.
// A failure is logged and retried at the next WAL open; the application is
// never failed for it.
func (v *VFS) register(mf *mainFile) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := mf.entry
	if e.link.Load() != nil {
		return
	}
	name, err := v.opts.Name(mf.path)
	if err == nil {
		var opts replicate.InAppOptions
		if e.codec.active() {
			opts.Codec = e.codec
		}
		var db *replicate.DB
		var hooks inapp.Hooks
		if db, hooks, err = v.r.AddInApp(context.Background(), mf.path, name, opts, inapp.Token{}); err == nil {
			if hooks.Opened() {
				e.link.Store(&link{db: db, hooks: hooks})
			} else {
				err = errors.New("released while added")
			}
		}
	}
	if err != nil {
		v.log.Error("walsync: cannot replicate database", "path", mf.path, "error", err)
	}
}
