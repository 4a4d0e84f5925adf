// Package objstore declares the object store contract walsync replicates
// into: the [Storage] interface, [ObjectInfo], the sentinel errors and the
// metadata keys. It has no dependencies, so that the backends
// (internal/dirstore, s3), the contract suite (internal/storagetest) and the
// in-memory test store (internal/memstore) can depend on the contract
// without depending on the engine.
//
// The engine re-exports every name here under the same name (for example
// replicate.Storage is objstore.Storage and replicate.ErrNotExist is
// objstore.ErrNotExist), so code outside the module only ever sees package
// replicate.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"
	"unicode/utf8"
)

// Storage is the object store that walsync replicates into. The s3 package
// and internal/dirstore implement it, and internal/storagetest holds the
// contract suite every implementation must pass.
//
// Keys are slash-separated strings such as "tenant1/app.db/0000/
// 0000000000000001-0000000000000001.ltx". They are never interpreted as local
// paths by the engine; a backend that maps keys to files must refuse keys that
// would escape its root.
type Storage interface {
	// Put stores size bytes read from r under key, with the given user
	// metadata (keys are lower-case, values printable ASCII).
	//
	// Put never overwrites: if key already exists with different content it
	// returns an error matching [ErrExists] and leaves the object unchanged.
	// If key already exists with the same content (same SHA-256), for
	// example because an earlier attempt timed out after the server stored
	// it, Put returns nil. The backend stores the SHA-256 of the content with
	// the object and may read r more than once (it seeks back to the start).
	Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error

	// Get opens key for reading from byte offset off. If n < 0 it reads to
	// the end; then off must be 0 and the returned reader verifies the stored
	// SHA-256 when it reaches EOF, returning an error matching
	// [ErrChecksum] that names the key instead of io.EOF on a mismatch.
	// A missing key returns an error matching [ErrNotExist]; a range that
	// runs past the end of the object returns an error when read short.
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)

	// Head returns the size, modification time and user metadata of key, or
	// an error matching [ErrNotExist].
	Head(ctx context.Context, key string) (ObjectInfo, error)

	// List yields the objects whose keys start with prefix and sort after
	// startAfter ("" for all), in ascending key order. Metadata is not
	// filled in. Iteration stops at the first error, which is yielded.
	List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error]

	// Delete removes keys. Missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	ModTime  time.Time
	Metadata map[string]string // only from Head
}

// Storage errors. Backends return errors that match these with errors.Is.
var (
	// ErrNotExist is returned for a key that does not exist.
	ErrNotExist = errors.New("object does not exist")

	// ErrExists is returned by Put when the key holds different content.
	ErrExists = errors.New("object already exists with different content")

	// ErrChecksum is returned when an object's content does not match the
	// SHA-256 stored with it.
	ErrChecksum = errors.New("object checksum mismatch")

	// ErrInvalidKey is returned by [KeyChecker.CheckKey] (and by backends
	// that check keys on every call) for a key the backend cannot store.
	ErrInvalidKey = errors.New("invalid key")

	// ErrRefused marks a request the target refused in a way that sending
	// it again unchanged cannot fix: permissions, credentials, a missing
	// bucket, a key or an object it does not accept. The engine treats
	// ErrInvalidKey the same: it does not keep what it cannot upload for
	// such an error; see docs/design.md, "Degraded mode".
	ErrRefused = errors.New("refused by the target")
)

// KeyChecker is a [Storage] that states which keys it can store. The
// engine asks once, when a database is added, about the longest keys it
// will ever write for it, so that a name the backend refuses is a clear
// start-up error instead of an upload that fails forever.
//
// Every backend implements it (the contract suite checks); decorators and
// test doubles need not, as [CheckKey] looks through Unwrap and falls back
// to [CheckPortableKey].
type KeyChecker interface {
	Storage

	// CheckKey returns nil if Put, Get, Head, List and Delete work with
	// key, or else an error matching [ErrInvalidKey] that says why. It
	// sends no request and does not depend on what is stored.
	CheckKey(key string) error
}

// Unwrapper is a [Storage] decorator that gives access to the Storage it
// wraps.
type Unwrapper interface {
	Unwrap() Storage
}

// MaxKeyLen is the longest key, in bytes, that every backend can be
// expected to store: S3's limit.
const MaxKeyLen = 1024

// CheckKey asks s, or the first Storage below it in a chain of
// [Unwrapper]s that is a [KeyChecker], whether it can store key. A chain
// without one is asked [CheckPortableKey].
func CheckKey(s Storage, key string) error {
	for s != nil {
		if kc, ok := s.(KeyChecker); ok {
			return kc.CheckKey(key)
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return CheckPortableKey(key)
}

// CheckPortableKey checks the rules every backend shares: a key is
// non-empty valid UTF-8 of at most [MaxKeyLen] bytes, without control
// characters (S3 lists keys in XML 1.0, which cannot carry most of them)
// and without "." or ".." elements (a file system resolves them, and so
// may an HTTP proxy).
func CheckPortableKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidKey, key)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w %.40q...: %d bytes, over the limit of %d", ErrInvalidKey, key, len(key), MaxKeyLen)
	}
	if i := strings.IndexFunc(key, isControl); i >= 0 {
		return fmt.Errorf("%w %q: control character at byte %d", ErrInvalidKey, key, i)
	}
	for elem := range strings.SplitSeq(key, "/") {
		if elem == "." || elem == ".." {
			return fmt.Errorf("%w %q: path element %q", ErrInvalidKey, key, elem)
		}
	}
	return nil
}

// isControl reports whether r is a C0 control character or DEL.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// MetaSHA256 is the user-metadata key (x-amz-meta-sha256 on S3) holding the
// lower-case hex SHA-256 of an object's content.
const MetaSHA256 = "sha256"

// MetaTimestamp is the user-metadata key Litestream v0.5 reads to learn an
// LTX file's creation time (RFC 3339 with nanoseconds) without fetching it.
const MetaTimestamp = "litestream-timestamp"
