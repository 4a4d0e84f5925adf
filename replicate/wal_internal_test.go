package replicate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
)

// walBuilder builds WAL files with valid headers, salts and checksums.
type walBuilder struct {
	pageSize     uint32
	bigEndian    bool
	salt1, salt2 uint32
	buf          bytes.Buffer
	s1, s2       uint32
}

func newWALBuilder(pageSize uint32, bigEndian bool, salt1, salt2 uint32) *walBuilder {
	b := &walBuilder{pageSize: pageSize, bigEndian: bigEndian, salt1: salt1, salt2: salt2}
	hdr := make([]byte, WALHeaderSize)
	magic := uint32(walMagicLE)
	if bigEndian {
		magic = walMagicBE
	}
	binary.BigEndian.PutUint32(hdr[0:], magic)
	binary.BigEndian.PutUint32(hdr[4:], walVersion)
	binary.BigEndian.PutUint32(hdr[8:], pageSize)
	binary.BigEndian.PutUint32(hdr[16:], salt1)
	binary.BigEndian.PutUint32(hdr[20:], salt2)
	b.s1, b.s2 = walChecksum(bigEndian, 0, 0, hdr[:24])
	binary.BigEndian.PutUint32(hdr[24:], b.s1)
	binary.BigEndian.PutUint32(hdr[28:], b.s2)
	b.buf.Write(hdr)
	return b
}

// frame appends a valid frame for pgno filled with fill.
func (b *walBuilder) frame(pgno, commit uint32, fill byte) *walBuilder {
	f := make([]byte, WALFrameHeaderSize+int(b.pageSize))
	binary.BigEndian.PutUint32(f[0:], pgno)
	binary.BigEndian.PutUint32(f[4:], commit)
	binary.BigEndian.PutUint32(f[8:], b.salt1)
	binary.BigEndian.PutUint32(f[12:], b.salt2)
	for i := WALFrameHeaderSize; i < len(f); i++ {
		f[i] = fill
	}
	b.s1, b.s2 = walChecksum(b.bigEndian, b.s1, b.s2, f[:8])
	b.s1, b.s2 = walChecksum(b.bigEndian, b.s1, b.s2, f[WALFrameHeaderSize:])
	binary.BigEndian.PutUint32(f[16:], b.s1)
	binary.BigEndian.PutUint32(f[20:], b.s2)
	b.buf.Write(f)
	return b
}

func (b *walBuilder) bytes() []byte { return bytes.Clone(b.buf.Bytes()) }

// frames reads every valid frame of w.
func frames(t *testing.T, w []byte) []WALFrame {
	t.Helper()
	rd, err := NewWALReader(bytes.NewReader(w))
	if err != nil {
		t.Fatal(err)
	}
	var out []WALFrame
	for {
		f, page, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if uint32(len(page)) != rd.Header().PageSize {
			t.Fatalf("page len = %d", len(page))
		}
		out = append(out, f)
	}
}

func TestWALReader(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		for _, be := range []bool{false, true} {
			w := newWALBuilder(512, be, 7, 9).frame(1, 0, 1).frame(2, 2, 2).frame(2, 2, 3).bytes()
			if got, want := len(frames(t, w)), 3; got != want {
				t.Fatalf("bigEndian=%v: frames = %d, want %d", be, got, want)
			}
		}
	})
	t.Run("Fixture", func(t *testing.T) {
		w, err := os.ReadFile("testdata/wal/three-commits.wal")
		if err != nil {
			t.Fatal(err)
		}
		fs := frames(t, w)
		commits := 0
		for _, f := range fs {
			if f.Commit != 0 {
				commits++
			}
		}
		if got, want := len(fs), 4; got != want {
			t.Fatalf("frames = %d, want %d", got, want)
		}
		if got, want := commits, 3; got != want {
			t.Fatalf("commits = %d, want %d", got, want)
		}
	})
	t.Run("ErrHeader", func(t *testing.T) {
		good := newWALBuilder(1024, false, 1, 2).bytes()
		for name, mutate := range map[string]func([]byte){
			"Magic":     func(b []byte) { b[3] = 0x80 },
			"Version":   func(b []byte) { b[7]++ },
			"PageSize":  func(b []byte) { binary.BigEndian.PutUint32(b[8:], 1000) },
			"Checksum":  func(b []byte) { b[31] ^= 1 },
			"SaltNoSum": func(b []byte) { b[17] ^= 1 },
		} {
			b := bytes.Clone(good)
			mutate(b)
			if _, err := NewWALReader(bytes.NewReader(b)); !errors.Is(err, ErrWALHeader) {
				t.Errorf("%s: err = %v, want ErrWALHeader", name, err)
			}
		}
		if _, err := NewWALReader(bytes.NewReader(good[:20])); !errors.Is(err, ErrWALHeader) {
			t.Errorf("short: err = %v, want ErrWALHeader", err)
		}
	})
	// Each corruption of the second frame must stop the reader after the first.
	t.Run("StopAtInvalidFrame", func(t *testing.T) {
		good := newWALBuilder(512, false, 5, 6).frame(1, 1, 1).frame(2, 2, 2).frame(3, 3, 3).bytes()
		off := WALHeaderSize + WALFrameHeaderSize + 512
		for name, mutate := range map[string]func([]byte) []byte{
			"Salt1":    func(b []byte) []byte { b[off+8] ^= 1; return b },
			"Salt2":    func(b []byte) []byte { b[off+15] ^= 1; return b },
			"Checksum": func(b []byte) []byte { b[off+23] ^= 1; return b },
			"Page":     func(b []byte) []byte { b[off+100] ^= 1; return b },
			"Pgno0":    func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], 0); return b },
			"Torn":     func(b []byte) []byte { return b[:off+200] },
		} {
			if got, want := len(frames(t, mutate(bytes.Clone(good)))), 1; got != want {
				t.Errorf("%s: frames = %d, want %d", name, got, want)
			}
		}
	})
	t.Run("Resume", func(t *testing.T) {
		w := newWALBuilder(512, true, 5, 6).frame(1, 1, 1).frame(2, 2, 2).frame(3, 3, 3).bytes()
		rd, err := NewWALReader(bytes.NewReader(w))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
		rd2 := NewWALReaderAt(bytes.NewReader(w), rd.Header(), rd.Pos())
		f, _, err := rd2.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := f.Pgno, uint32(2); got != want {
			t.Fatalf("pgno = %d, want %d", got, want)
		}
		// A position with a wrong running checksum finds nothing.
		pos := rd.Pos()
		pos.Checksum1++
		if _, _, err := NewWALReaderAt(bytes.NewReader(w), rd.Header(), pos).Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("err = %v, want EOF", err)
		}
	})
}

func TestScanWAL(t *testing.T) {
	// txn 1: pages 1,2,3 (commit 3); txn 2: page 2 again, page 4 (commit 4);
	// txn 3 shrinks to 2 pages, rewriting page 1; then an uncommitted frame.
	w := newWALBuilder(512, false, 1, 2).
		frame(1, 0, 'a').frame(2, 0, 'b').frame(3, 3, 'c').
		frame(2, 0, 'd').frame(4, 4, 'e').
		frame(1, 2, 'f').
		frame(2, 0, 'z').bytes()
	hdr, err := ParseWALHeader(w)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(w)
	t.Run("All", func(t *testing.T) {
		s, err := scanWAL(r, hdr, hdr.start(), 0, 0)
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
		s, err := scanWAL(r, hdr, hdr.start(), 1, 0)
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
		if got, want := s2.end, func() WALPos { a, _ := scanWAL(r, hdr, hdr.start(), 0, 0); return a.end }(); got != want {
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

// FuzzWALReader feeds arbitrary bytes to the WAL reader and scanner: they
// must never panic, frames must be consecutive, and the scan must end on a
// commit boundary inside the input.
func FuzzWALReader(f *testing.F) {
	fix, _ := os.ReadFile("testdata/wal/three-commits.wal")
	f.Add(fix)
	f.Add(newWALBuilder(512, true, 1, 2).frame(1, 1, 1).frame(2, 0, 2).bytes())
	f.Add([]byte("not a wal"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewWALReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		hdr := rd.Header()
		want := int64(WALHeaderSize)
		for {
			fr, _, err := rd.Next()
			if err != nil {
				break
			}
			if fr.Offset != want {
				t.Fatalf("frame at %d, want %d", fr.Offset, want)
			}
			want += hdr.frameSize()
		}
		s, err := scanWAL(bytes.NewReader(data), hdr, hdr.start(), 0, 0)
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
