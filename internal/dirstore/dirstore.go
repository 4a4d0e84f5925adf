// Package dirstore stores walsync objects as files in a local directory, for
// file:///abs/dir replica targets and for tests.
//
// Usage:
//
//	st, err := dirstore.Open("/var/backups/walsync")
//	if err != nil { ... }
//	defer st.Close()
//	err = st.Put(ctx, "app.db/0000/1.ltx", r, size, nil)
//
// The key "a/b/c" is the file dir/a/b/c, so the directory can be copied or
// served like any other file tree. Each object's SHA-256 and user metadata
// live in the extended attribute "user.walsync" of its file, as JSON, set
// before the file is published, so an object and its metadata appear
// together or not at all. The file system must support user extended
// attributes (ext4, xfs, btrfs, tmpfs on Linux 6.6+); Open checks.
//
// Keys are never trusted as paths: a key that is empty, absolute, longer
// than 4,095 bytes (PATH_MAX), has an empty, "." or ".." path element or one
// longer than 255 bytes (NAME_MAX), or contains a backslash, a control
// character or invalid UTF-8 is refused before the disk is touched
// ([Store.CheckKey]), and all file access goes through an [os.Root], so
// nothing outside dir can be reached even through symbolic links. Elements starting with a dot are ordinary names: a
// database under /home/u/.local/share keeps the name its path gives it.
//
// Caveats: like a file system (and unlike S3) a key cannot be both an object
// and a directory of objects ("a" and "a/b"). An object is never
// overwritten, by this process or another. Objects are written as unnamed
// files (O_TMPFILE) and linked into place, so a crash leaves nothing behind.
package dirstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"

	"github.com/walsync/walsync/replicate"
)

// Errors returned by dirstore besides the [replicate.Storage] sentinels.
var (
	// ErrInvalidKey is returned for a key that cannot be mapped safely to a
	// file below the store's directory. It is [replicate.ErrInvalidKey].
	ErrInvalidKey = replicate.ErrInvalidKey

	// ErrInvalidMeta is returned by Put for user metadata that does not have
	// lower-case keys and printable ASCII values.
	ErrInvalidMeta = errors.New("invalid metadata")

	// ErrNoDir is returned by OpenExisting for a directory that does not
	// exist.
	ErrNoDir = errors.New("no such directory")
)

// metaAttr is the extended attribute holding an object's metadata.
const metaAttr = "user.walsync"

var _ replicate.KeyChecker = (*Store)(nil)

// Store is a [replicate.Storage] backed by a local directory. It is safe for
// concurrent use by multiple goroutines.
type Store struct {
	root *os.Root

	// mu orders the creation of a Put's directories against Delete, which
	// removes directories it left empty.
	mu sync.Mutex
}

// Open returns a Store for dir, creating the directory (mode 0700) if it does
// not exist. Close releases it.
func Open(dir string) (*Store, error) { return open(dir, true) }

// OpenExisting returns a Store for dir, which must exist: it creates
// nothing, and a missing directory is an error matching [ErrNoDir] that
// names it. It is for readers (listing and restoring), for which a missing
// directory is a mistyped target rather than an empty one. Close releases
// it.
func OpenExisting(dir string) (*Store, error) { return open(dir, false) }

func open(dir string, create bool) (*Store, error) {
	if dir == "" {
		return nil, errors.New("dirstore: open: empty directory name")
	}
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("dirstore: open: %w", err)
		}
	}
	root, err := os.OpenRoot(dir)
	if !create && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("dirstore: open %s: %w", dir, ErrNoDir)
	}
	if err != nil {
		return nil, fmt.Errorf("dirstore: open: %w", err)
	}
	s := &Store{root: root}
	if err := s.probeXattr(); err != nil {
		root.Close()
		return nil, fmt.Errorf("dirstore: open %s: %w", dir, err)
	}
	return s, nil
}

// probeXattr checks that the file system supports what Put needs: unnamed
// files (O_TMPFILE) and user extended attributes.
func (s *Store) probeXattr() error {
	dir, err := s.root.Open(".")
	if err != nil {
		return err
	}
	defer dir.Close()
	f, err := openTmpfile(dir)
	if err != nil {
		return fmt.Errorf("the file system does not support unnamed files (O_TMPFILE): %w", err)
	}
	defer f.Close()
	if err := setMeta(f, map[string]string{"probe": "1"}); err != nil {
		return fmt.Errorf("the file system does not store extended attributes, which walsync needs for checksums: %w", err)
	}
	return nil
}

// Dir returns the directory the Store was opened on.
func (s *Store) Dir() string { return s.root.Name() }

// Close releases the directory handle. The Store must not be used afterwards.
func (s *Store) Close() error {
	if err := s.root.Close(); err != nil {
		return fmt.Errorf("dirstore: close: %w", err)
	}
	return nil
}

// Limits of Linux file systems: the longest file name (NAME_MAX) and the
// longest relative path a system call takes (PATH_MAX less its NUL).
const (
	maxElem = 255
	maxPath = 4095
)

// CheckKey returns nil if key maps to a file below the store's directory,
// or an error matching [ErrInvalidKey] that says why not: the key is
// empty, absolute, not UTF-8, longer than 4,095 bytes, holds a backslash or
// a control character, or has an empty, "." or ".." element or one over 255
// bytes. It touches nothing on disk.
func (s *Store) CheckKey(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("dirstore: %w", err)
	}
	return nil
}

// checkKey reports why key cannot be used as a path below the root, or nil.
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w %q: not UTF-8", ErrInvalidKey, key)
	case len(key) > maxPath:
		return fmt.Errorf("%w: %d bytes, over the file system's %d", ErrInvalidKey, len(key), maxPath)
	case strings.ContainsRune(key, '\\'):
		return fmt.Errorf("%w %q: contains a backslash", ErrInvalidKey, key)
	case strings.ContainsFunc(key, isControl):
		return fmt.Errorf("%w %q: contains a control character", ErrInvalidKey, key)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%w %q: absolute", ErrInvalidKey, key)
	}
	for elem := range strings.SplitSeq(key, "/") {
		switch {
		case elem == "":
			return fmt.Errorf("%w %q: empty path element", ErrInvalidKey, key)
		case elem == "." || elem == "..":
			return fmt.Errorf("%w %q: path element %q", ErrInvalidKey, key, elem)
		case len(elem) > maxElem:
			return fmt.Errorf("%w %q: path element of %d bytes, over the file system's %d", ErrInvalidKey, key, len(elem), maxElem)
		}
	}
	return nil
}

// validName reports whether a directory entry name can be part of a key; it
// is the per-element half of checkKey, used by List.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxElem &&
		utf8.ValidString(name) && !strings.ContainsAny(name, "\\/") &&
		!strings.ContainsFunc(name, isControl)
}

// isControl reports whether r is a C0 control character (NUL included) or
// DEL.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkMeta enforces the [replicate.Storage] metadata rules: lower-case keys
// made of letters, digits, '-' and '_', and printable ASCII values.
func checkMeta(meta map[string]string) error {
	for k, v := range meta {
		if k == "" {
			return fmt.Errorf("%w: empty key", ErrInvalidMeta)
		}
		for _, c := range []byte(k) {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return fmt.Errorf("%w: key %q: want lower-case letters, digits, '-' or '_'", ErrInvalidMeta, k)
			}
		}
		for _, c := range []byte(v) {
			if c < 0x20 || c > 0x7e {
				return fmt.Errorf("%w: value of %q is not printable ASCII", ErrInvalidMeta, k)
			}
		}
	}
	return nil
}

// path returns the file name of a checked key, relative to the root.
func path(key string) string { return filepath.FromSlash(key) }

// stat returns the FileInfo of the data file name, or an error matching
// [replicate.ErrNotExist] if there is no regular file by that name.
func (s *Store) stat(name string) (fs.FileInfo, error) {
	fi, err := s.root.Lstat(name)
	if err != nil {
		if notExist(err) {
			return nil, replicate.ErrNotExist
		}
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, replicate.ErrNotExist
	}
	return fi, nil
}

// notExist reports whether err means that a path does not exist, including
// the case where a parent is a file rather than a directory.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Delete removes the objects stored under keys, then any directories this
// left empty. Missing keys are not an error; invalid keys are refused before
// anything is removed.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return fmt.Errorf("dirstore: delete: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dirstore: delete %s: %w", key, err)
		}
		name := path(key)
		if _, err := s.stat(name); errors.Is(err, replicate.ErrNotExist) {
			continue // nothing to delete (or a directory, which is not an object)
		} else if err != nil {
			return fmt.Errorf("dirstore: delete %s: %w", key, err)
		} else if err := s.root.Remove(name); err != nil && !notExist(err) {
			return fmt.Errorf("dirstore: delete %s: %w", key, err)
		}
		s.pruneDirs(filepath.Dir(name), ".")
	}
	return nil
}

// pruneDirs removes dir and its parents up to (not including) stop while
// they are empty. It is best effort: the first directory that cannot be
// removed, usually because it is not empty, ends it, and an empty directory
// left behind is harmless. The caller holds s.mu, so no Put is between
// creating a directory and filling it.
func (s *Store) pruneDirs(dir, stop string) {
	for ; dir != stop && dir != "." && dir != string(filepath.Separator); dir = filepath.Dir(dir) {
		if fi, err := s.root.Lstat(dir); err != nil || !fi.IsDir() || s.root.Remove(dir) != nil {
			return
		}
	}
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
