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
	"io"
	"iter"
	"time"
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
)

// MetaSHA256 is the user-metadata key (x-amz-meta-sha256 on S3) holding the
// lower-case hex SHA-256 of an object's content.
const MetaSHA256 = "sha256"

// MetaTimestamp is the user-metadata key Litestream v0.5 reads to learn an
// LTX file's creation time (RFC 3339 with nanoseconds) without fetching it.
const MetaTimestamp = "litestream-timestamp"
