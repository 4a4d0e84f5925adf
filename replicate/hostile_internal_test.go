package replicate

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync/internal/memstore"
)

// hostileStore is a Storage whose List ignores its arguments and yields
// keys, as a broken or hostile backend might: keys outside the prefix,
// shorter than it, empty.
type hostileStore struct {
	*memstore.Store
	keys []string
}

func (s *hostileStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		for _, k := range s.keys {
			if !yield(ObjectInfo{Key: k, Size: 1}, nil) {
				return
			}
		}
	}
}

// hostileKeys are not LTX files of any database: shorter than a database's
// prefix, empty elements, bad levels.
var hostileKeys = []string{
	"", "d", "db", "db/", "db/0", "db/0000", "db/0000/", "db/0009/x",
	"/", "//", "///", "/0000/0000000000000001-0000000000000001.ltx",
	"a/-001/0000000000000001-0000000000000001.ltx", // a signed level
	"a/+009/0000000000000001-0000000000000001.ltx",
	"a//0000000000000001-0000000000000001.ltx",
	"db/000g/0000000000000001-0000000000000001.ltx",
	"db/0009/0000000000000002-0000000000000003.ltx", // a snapshot must start at TXID 1
}

func TestListLTXFiles_HostileKeys(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		keys := append([]string{
			"db/0000/0000000000000002-0000000000000002.ltx",
			"db/0009/0000000000000001-0000000000000001.ltx",
			"dc/0000/0000000000000003-0000000000000003.ltx", // outside the prefix, as long as it
		}, hostileKeys...)
		files, err := listLTXFiles(t.Context(), &hostileStore{Store: memstore.New(), keys: keys}, "db")
		if err != nil {
			t.Fatalf("listLTXFiles: %v", err)
		}
		var got []string
		for _, f := range files {
			got = append(got, f.key)
		}
		if got, want := fmt.Sprint(got), "[db/0000/0000000000000002-0000000000000002.ltx db/0009/0000000000000001-0000000000000001.ltx]"; got != want {
			t.Fatalf("listLTXFiles=%s, want %s", got, want)
		}
	})
	t.Run("ErrNoBackup", func(t *testing.T) {
		keys := append([]string{"dc/0000/0000000000000001-0000000000000001.ltx"}, hostileKeys...)
		store := &hostileStore{Store: memstore.New(), keys: keys}
		_, err := Restore(t.Context(), store, "db", filepath.Join(t.TempDir(), "out.db"), RestoreOptions{})
		if !errors.Is(err, ErrNoBackup) {
			t.Fatalf("Restore err=%v, want ErrNoBackup", err)
		}
	})
}

func TestListDatabases_HostileKeys(t *testing.T) {
	store := &hostileStore{Store: memstore.New(), keys: hostileKeys}
	dbs, err := ListDatabases(t.Context(), store)
	if err != nil {
		t.Fatalf("ListDatabases: %v", err)
	}
	if len(dbs) != 0 {
		t.Fatalf("ListDatabases=%+v, want none", dbs)
	}
}
