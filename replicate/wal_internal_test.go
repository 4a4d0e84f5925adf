package replicate

import (
	"bytes"
	"os"
	"testing"

	"github.com/walsync/walsync/internal/wal"
)

func TestScanWAL(t *testing.T) {
	// txn 1: pages 1,2,3 (commit 3); txn 2: page 2 again, page 4 (commit 4);
	// txn 3 shrinks to 2 pages, rewriting page 1; then an uncommitted frame.
	w := wal.NewBuilder(512, false, 1, 2).
		Frame(1, 0, 'a').Frame(2, 0, 'b').Frame(3, 3, 'c').
		Frame(2, 0, 'd').Frame(4, 4, 'e').
		Frame(1, 2, 'f').
		Frame(2, 0, 'z').Bytes()
	hdr, err := wal.ParseHeader(w)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(w)
	t.Run("All", func(t *testing.T) {
		s, err := scanWAL(r, hdr, hdr.Start(), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := s.txns, 3; got != want {
			t.Fatalf("txns = %d, want %d", got, want)
		}
		if got, want := s.commit, uint32(2); got != want {
			t.Fatalf("commit = %d, want %d", got, want)
		}
		want := []pageRef{{1, 6}, {2, 4}}
		if !equalRefs(s.pages, want) {
			t.Fatalf("pages = %v, want %v", s.pages, want)
		}
		if got, want := s.end.Offset, hdr.FrameOffset(7); got != want {
			t.Fatalf("end = %d, want %d (before the uncommitted frame)", got, want)
		}
	})
	t.Run("MaxBytes", func(t *testing.T) {
		s, err := scanWAL(r, hdr, hdr.Start(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := s.txns, 1; got != want {
			t.Fatalf("txns = %d, want %d", got, want)
		}
		s2, err := scanWAL(r, hdr, s.end, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := s2.txns, 2; got != want {
			t.Fatalf("second scan txns = %d, want %d", got, want)
		}
		if got, want := s2.end, func() wal.Pos { a, _ := scanWAL(r, hdr, hdr.Start(), 0, 0); return a.end }(); got != want {
			t.Fatalf("end = %+v, want %+v", got, want)
		}
	})
}

func equalRefs(a, b []pageRef) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzScanWAL feeds arbitrary bytes to the WAL reader and scanner: they
// must never panic, frames must be consecutive, and the scan must end on a
// commit boundary inside the input.
func FuzzScanWAL(f *testing.F) {
	fix, _ := os.ReadFile("../internal/wal/testdata/wal/three-commits.wal")
	f.Add(fix)
	f.Add(wal.NewBuilder(512, true, 1, 2).Frame(1, 1, 1).Frame(2, 0, 2).Bytes())
	f.Add([]byte("not a wal"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := wal.NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		hdr := rd.Header()
		want := int64(wal.HeaderSize)
		for {
			fr, _, err := rd.Next()
			if err != nil {
				break
			}
			if fr.Offset != want {
				t.Fatalf("frame at %d, want %d", fr.Offset, want)
			}
			want += hdr.FrameSize()
		}
		s, err := scanWAL(bytes.NewReader(data), hdr, hdr.Start(), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if s.end.Offset > int64(len(data)) || s.end.Offset > want {
			t.Fatalf("scan end %d past data %d", s.end.Offset, len(data))
		}
		for i, p := range s.pages {
			if p.pgno > s.commit || (i > 0 && s.pages[i-1].pgno >= p.pgno) {
				t.Fatalf("bad pages %v (commit %d)", s.pages, s.commit)
			}
		}
	})
}
