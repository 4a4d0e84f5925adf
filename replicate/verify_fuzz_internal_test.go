package replicate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync/internal/memstore"
)

// FuzzRestoreSegment restores the corpus's valid snapshot followed by an
// arbitrary object as the segment of TXID 2: no panic, and a restore that
// succeeds yields a file of exactly the size it reports, no larger than
// the pages the backup holds allow (the snapshot's 3 plus one per frame).
func FuzzRestoreSegment(f *testing.F) {
	cases := hostileCases(f)
	k2 := ltxKey("db", 0, 2, 2)
	for _, c := range cases {
		if b, ok := c.objects[k2]; ok {
			f.Add(b)
		}
		if b, ok := c.objects[ltxKey("db", 0, 3, 3)]; ok {
			f.Add(b)
		}
	}
	snap := cases[0].objects[ltxKey("db", 9, 1, 1)]
	f.Fuzz(func(t *testing.T, seg []byte) {
		store := memstore.New()
		for k, v := range map[string][]byte{ltxKey("db", 9, 1, 1): snap, k2: seg} {
			if err := store.Put(t.Context(), k, bytes.NewReader(v), int64(len(v)), nil); err != nil {
				t.Fatal(err)
			}
		}
		out := filepath.Join(t.TempDir(), "out.db")
		res, err := Restore(t.Context(), store, "db", out, RestoreOptions{Check: IntegrityNone})
		if err != nil {
			if _, serr := os.Stat(out); serr == nil {
				t.Fatalf("refused restore (%v) left its output", err)
			}
			return
		}
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(res.Pages)*int64(res.PageSize) {
			t.Fatalf("output %d bytes, result says %d pages of %d", fi.Size(), res.Pages, res.PageSize)
		}
		if max := 3 + len(seg)/ltxFramePageMin; int(res.Pages) > max {
			t.Fatalf("restored %d pages from a %d-byte segment", res.Pages, len(seg))
		}
	})
}

// ltxFramePageMin is the fewest bytes a page frame takes (header, size, a
// minimal LZ4 block), to bound the pages a segment of n bytes can hold.
const ltxFramePageMin = 6 + 4 + 1
