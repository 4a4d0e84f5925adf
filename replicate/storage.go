package replicate

import "github.com/walsync/walsync/internal/objstore"

// Storage is the object store that walsync replicates into: Put (never
// overwriting, idempotent for the same content), verified and ranged Get,
// Head, ordered List and Delete. The contract, written on each method, is
// declared in internal/objstore, where the backends (the s3 package,
// internal/dirstore), the contract suite (internal/storagetest) and the test
// store (internal/memstore) can use it without importing the engine; this
// alias is the name callers use.
//
// Keys are slash-separated strings such as "tenant1/app.db/0000/
// 0000000000000001-0000000000000001.ltx". They are never interpreted as local
// paths by the engine; a backend that maps keys to files must refuse keys that
// would escape its root.
type Storage = objstore.Storage

// ObjectInfo describes one stored object: Key, Size, ModTime, and Metadata
// (only from Head).
type ObjectInfo = objstore.ObjectInfo

// Storage errors. Backends return errors that match these with errors.Is;
// they are the same values as internal/objstore's.
var (
	// ErrNotExist is returned for a key that does not exist.
	ErrNotExist = objstore.ErrNotExist

	// ErrExists is returned by Put when the key holds different content.
	ErrExists = objstore.ErrExists

	// ErrChecksum is returned when an object's content does not match the
	// SHA-256 stored with it.
	ErrChecksum = objstore.ErrChecksum

	// ErrInvalidKey is returned for a key a backend cannot store.
	ErrInvalidKey = objstore.ErrInvalidKey

	// ErrRefused marks a request the target refused for good
	// (permissions, a key or an object it does not accept).
	ErrRefused = objstore.ErrRefused
)

// KeyChecker is a [Storage] that states which keys it can store; see
// internal/objstore. Every backend of this module implements it, and
// [Replicator.Add] uses it to refuse a name the target cannot hold.
type KeyChecker = objstore.KeyChecker

// MetaSHA256 is the user-metadata key (x-amz-meta-sha256 on S3) holding the
// lower-case hex SHA-256 of an object's content.
const MetaSHA256 = objstore.MetaSHA256

// MetaTimestamp is the user-metadata key Litestream v0.5 reads to learn an
// LTX file's creation time (RFC 3339 with nanoseconds) without fetching it.
const MetaTimestamp = objstore.MetaTimestamp
