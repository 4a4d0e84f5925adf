package replicate

import (
	"fmt"
	"math"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/objstore"
)

// longestKeys returns the longest keys walsync writes for a database name,
// one of each shape: an LTX file (every level and TXID has the same
// length) and the lease.
func longestKeys(name string) []string {
	return []string{
		ltxKey(name, SnapshotLevel, 1, ltx.TXID(math.MaxUint64)),
		leaseKey(name, math.MaxUint64),
	}
}

// checkName asks the target whether it can hold every key walsync will
// write for name, so that a name it refuses (too long with the target's
// prefix, not UTF-8, an element the file system cannot hold) is refused
// once, at Add, rather than failing every upload. The error matches
// [ErrBadName] and the backend's [ErrInvalidKey].
func checkName(store Storage, name string) error {
	for _, key := range longestKeys(name) {
		if err := objstore.CheckKey(store, key); err != nil {
			return fmt.Errorf("%w %q: the target cannot hold its keys: %w", ErrBadName, name, err)
		}
	}
	return nil
}
