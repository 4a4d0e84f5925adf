// Package vfs is walsync's in-process capture path: an SQLite VFS for
// github.com/ncruces/go-sqlite3 that replicates every database opened
// through it into a [replicate.Replicator], the same one (and the same
// shared uploader) that replicates databases written by other processes.
//
// Usage:
//
//	r := replicate.New(store, replicate.Options{Logger: logger})
//	go r.Run(ctx)                                  // uploads in the background
//	v, err := vfs.Register("walsync", r, vfs.Options{})
//	db, err := sql.Open("sqlite3", "file:app.db?vfs=walsync&_pragma=journal_mode(wal)")
//	...
//	err = v.Flush(ctx) // everything committed so far is in the target
//
// Every commit is signalled to the uploader as SQLite makes it, with no
// polling and nothing copied on the commit path: the uploader reads the
// committed frames from the WAL, validating salts and the checksum chain,
// once per sync interval. Before SQLite may reset, truncate or delete the
// WAL (after a checkpoint in any mode, or when the last connection closes),
// the VFS writes every committed frame not yet uploaded into a local spool
// (<db>-walsync/) and fsyncs it, so no checkpoint loses a transaction and
// none forces a snapshot, and a crash loses nothing either. S3 is never on
// the commit path: an outage delays uploads, never commits.
//
// Encryption: stack the VFS over ncruces' vfs/adiantum or vfs/xts with
// Options.Base and Options.Encryption. The target then holds only
// ciphertext, encrypted exactly as the database file stores it, and a
// restore produces a file that opens with the same VFS and key. Databases
// with checksum reserve bytes (ncruces' checksum VFS) are stored with valid
// checksums. See docs/vfs.md.
package vfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	sqlite3vfs "github.com/ncruces/go-sqlite3/vfs"

	"github.com/walsync/walsync/internal/inapp"
	"github.com/walsync/walsync/replicate"
)

// Encryption names the encrypting VFS that Options.Base stacks, if any.
type Encryption int

// Supported stacks.
const (
	NoEncryption Encryption = iota
	// Adiantum is github.com/ncruces/go-sqlite3/vfs/adiantum with its
	// default cipher: key/hexkey (32 bytes) or textkey (Argon2id).
	Adiantum
	// XTS is github.com/ncruces/go-sqlite3/vfs/xts with its default cipher:
	// AES-XTS with a key/hexkey of 32, 48 or 64 bytes or a textkey (PBKDF2).
	XTS
)

// Options configures a walsync VFS.
type Options struct {
	// Base is the VFS the walsync VFS wraps. Default: the OS VFS.
	Base sqlite3vfs.VFS

	// Encryption tells walsync which encrypting VFS Base is, so that it can
	// read the WAL and store pages exactly as that VFS does. The key comes
	// from the database URI (key, hexkey, textkey) or the PRAGMA of the same
	// names, as for that VFS.
	Encryption Encryption

	// Name returns the name of a database in the target, given its absolute
	// path. Default: replicate.NameFromPath.
	Name func(path string) (string, error)

	// Logger receives errors that cannot be returned to SQLite (a
	// database that cannot be replicated, for example because another
	// process holds its lease). Default: slog.Default().
	Logger *slog.Logger
}

// VFS is a registered walsync VFS.
type VFS struct {
	name string
	r    *replicate.Replicator
	opts Options
	log  *slog.Logger

	mu  sync.Mutex
	dbs map[string]*dbEntry // +checklocks:mu; by database path
}

// dbEntry is one database opened through the VFS, from its first open
// handle to its last close.
type dbEntry struct {
	link   atomic.Pointer[link] // nil until registered with the replicator
	codec  *codec
	walEnd atomic.Int64 // end of the last WAL frame written (0 after a reset)
	opens  int          // +checklocks:VFS.mu; main-database handles open
}

// link is a database registered with the replicator and the hooks the VFS
// calls on it.
type link struct {
	db    *replicate.DB
	hooks inapp.Hooks
}

// hooks returns the entry's hooks, or nil before it is registered.
func (e *dbEntry) hooks() inapp.Hooks {
	if l := e.link.Load(); l != nil {
		return l.hooks
	}
	return nil
}

// Register registers a VFS under name that wraps opts.Base and replicates
// every database opened through it into r. Open databases with
// "file:PATH?vfs=NAME" (and any key parameters the base VFS needs).
func Register(name string, r *replicate.Replicator, opts Options) (*VFS, error) {
	if name == "" || r == nil {
		return nil, errors.New("vfs: Register needs a name and a replicator")
	}
	if sqlite3vfs.Find(name) != nil {
		return nil, fmt.Errorf("vfs: %q is already registered", name)
	}
	if opts.Base == nil {
		opts.Base = sqlite3vfs.Find("")
	}
	if opts.Name == nil {
		opts.Name = replicate.NameFromPath
	}
	if opts.Logger == nil {
		// A database that cannot be replicated must not go unnoticed.
		opts.Logger = slog.Default()
	}
	v := &VFS{name: name, r: r, opts: opts, log: opts.Logger, dbs: make(map[string]*dbEntry)}
	sqlite3vfs.Register(name, &walsyncVFS{VFS: opts.Base, v: v})
	return v, nil
}

// Name returns the name the VFS is registered under.
func (v *VFS) Name() string { return v.name }

// Flush returns once every transaction committed through the VFS before the
// call is durable in the target, or the first error.
func (v *VFS) Flush(ctx context.Context) error {
	return v.r.Sync(ctx)
}

// DB returns the replicated database at path (absolute, as opened), or nil
// if no connection through the VFS has it open with its WAL (the
// replicator releases a database once its application closed it and
// everything is uploaded).
func (v *VFS) DB(path string) *replicate.DB {
	if e := v.lookup(path); e != nil {
		if l := e.link.Load(); l != nil {
			return l.db
		}
	}
	return nil
}

// Unregister removes the VFS from SQLite's registry. Close every connection
// opened through it first: SQLite looks the VFS up again when the last
// connection closes.
func (v *VFS) Unregister() { sqlite3vfs.Unregister(v.name) }
