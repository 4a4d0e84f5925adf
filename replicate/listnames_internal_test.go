package replicate

import (
	"bytes"
	"slices"
	"testing"

	"github.com/walsync/walsync/internal/memstore"
)

// TestListNames: ListNames returns the names ListDatabases returns, from
// the keys alone: LTX objects of valid names, whatever their content, and
// nothing for hostile keys, leases or other objects.
func TestListNames(t *testing.T) {
	t.Run("Hostile", func(t *testing.T) {
		names, err := ListNames(t.Context(), &hostileStore{Store: memstore.New(), keys: hostileKeys})
		if err != nil || len(names) != 0 {
			t.Fatalf("ListNames=%q, %v; want none", names, err)
		}
	})
	t.Run("OK", func(t *testing.T) {
		store := memstore.New()
		for _, k := range []string{
			"b/c/0000/0000000000000002-0000000000000002.ltx",
			"a/0009/0000000000000001-0000000000000001.ltx",
			"a/0000/0000000000000002-0000000000000002.ltx",
			"x/0009/0000000000000002-0000000000000003.ltx", // a snapshot must start at TXID 1
			"a-walsync/lease/0000000000000001",
			"notes/readme.txt",
		} {
			if err := store.Put(t.Context(), k, bytes.NewReader([]byte("junk")), 4, nil); err != nil {
				t.Fatal(err)
			}
		}
		names, err := ListNames(t.Context(), store)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"a", "b/c"}; !slices.Equal(names, want) {
			t.Fatalf("ListNames=%q, want %q", names, want)
		}
		dbs, err := ListDatabases(t.Context(), store)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, d := range dbs {
			listed = append(listed, d.Name)
		}
		if !slices.Equal(names, listed) {
			t.Fatalf("ListNames=%q, ListDatabases names %q", names, listed)
		}
	})
}
