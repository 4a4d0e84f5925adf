package ltxenc

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/superfly/ltx"
)

// TestWriterMatchesLibrary: Writer must produce exactly the bytes of
// github.com/superfly/ltx's Encoder, for segments and snapshots, across
// reuse of a pooled writer.
func TestWriterMatchesLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 20 {
		pageSize := uint32(512 << rng.IntN(5))
		snapshot := iter%3 == 0
		commit := uint32(1 + rng.IntN(40))
		hdr := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: pageSize, Commit: commit,
			MinTXID: 5, MaxTXID: 5, Timestamp: int64(iter) * 1000, WALOffset: 32, WALSize: 4096, WALSalt1: 7, WALSalt2: 9}
		var pgnos []uint32
		for p := uint32(1); p <= commit; p++ {
			if snapshot || rng.IntN(3) == 0 {
				pgnos = append(pgnos, p)
			}
		}
		if snapshot {
			hdr.MinTXID = 1
		}
		pages := make([][]byte, len(pgnos))
		for i := range pages {
			pages[i] = make([]byte, pageSize)
			switch rng.IntN(3) {
			case 0: // random: incompressible
				for j := range pages[i] {
					pages[i][j] = byte(rng.IntN(256))
				}
			case 1: // repetitive
				for j := range pages[i] {
					pages[i][j] = byte(j % 7)
				}
			}
		}
		var want bytes.Buffer
		enc, _ := ltx.NewEncoder(&want)
		if err := enc.EncodeHeader(hdr); err != nil {
			t.Fatal(err)
		}
		for i, p := range pgnos {
			if err := enc.EncodePage(ltx.PageHeader{Pgno: p}, pages[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		lw, err := NewWriter(&got, hdr)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pgnos {
			if err := lw.Page(p, pages[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := lw.Close(); err != nil {
			t.Fatal(err)
		}
		lw.Release()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("iter %d: Writer output (%d bytes) differs from ltx.Encoder (%d bytes)", iter, got.Len(), want.Len())
		}
		dec := ltx.NewDecoder(bytes.NewReader(got.Bytes()))
		if err := dec.Verify(); err != nil {
			t.Fatalf("iter %d: decoder rejects the file: %v", iter, err)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	hdr := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 3, MinTXID: 2, MaxTXID: 2, Timestamp: 1}
	for name, c := range map[string]struct {
		pgno uint32
		size int
	}{
		"ErrPageZero":     {0, 512},
		"ErrBeyondCommit": {4, 512},
		"ErrSize":         {2, 100},
	} {
		lw, err := NewWriter(&bytes.Buffer{}, hdr)
		if err != nil {
			t.Fatal(err)
		}
		if err := lw.Page(c.pgno, make([]byte, c.size)); err == nil {
			t.Errorf("%s: no error", name)
		}
		lw.Release()
	}
	lw, _ := NewWriter(&bytes.Buffer{}, hdr)
	defer lw.Release()
	lw.Page(2, make([]byte, 512))
	if err := lw.Page(2, make([]byte, 512)); err == nil {
		t.Error("ErrOrder: no error")
	}
	if _, err := NewWriter(&bytes.Buffer{}, ltx.Header{}); err == nil {
		t.Error("ErrHeader: no error")
	}
}
