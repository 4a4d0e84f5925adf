package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
)

// frames reads every valid frame of w.
func frames(t *testing.T, w []byte) []Frame {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(w))
	if err != nil {
		t.Fatal(err)
	}
	var out []Frame
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
			w := NewBuilder(512, be, 7, 9).Frame(1, 0, 1).Frame(2, 2, 2).Frame(2, 2, 3).Bytes()
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
		good := NewBuilder(1024, false, 1, 2).Bytes()
		for name, mutate := range map[string]func([]byte){
			"Magic":     func(b []byte) { b[3] = 0x80 },
			"Version":   func(b []byte) { b[7]++ },
			"PageSize":  func(b []byte) { binary.BigEndian.PutUint32(b[8:], 1000) },
			"Checksum":  func(b []byte) { b[31] ^= 1 },
			"SaltNoSum": func(b []byte) { b[17] ^= 1 },
		} {
			b := bytes.Clone(good)
			mutate(b)
			if _, err := NewReader(bytes.NewReader(b)); !errors.Is(err, ErrHeader) {
				t.Errorf("%s: err = %v, want ErrHeader", name, err)
			}
		}
		if _, err := NewReader(bytes.NewReader(good[:20])); !errors.Is(err, ErrHeader) {
			t.Errorf("short: err = %v, want ErrHeader", err)
		}
	})
	// Each corruption of the second frame must stop the reader after the first.
	t.Run("StopAtInvalidFrame", func(t *testing.T) {
		good := NewBuilder(512, false, 5, 6).Frame(1, 1, 1).Frame(2, 2, 2).Frame(3, 3, 3).Bytes()
		off := HeaderSize + FrameHeaderSize + 512
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
		w := NewBuilder(512, true, 5, 6).Frame(1, 1, 1).Frame(2, 2, 2).Frame(3, 3, 3).Bytes()
		rd, err := NewReader(bytes.NewReader(w))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
		rd2 := NewReaderAt(bytes.NewReader(w), rd.Header(), rd.Pos())
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
		if _, _, err := NewReaderAt(bytes.NewReader(w), rd.Header(), pos).Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("err = %v, want EOF", err)
		}
	})
}

// FuzzReader feeds arbitrary bytes to the WAL reader: it must never panic,
// and frames must be consecutive.
func FuzzReader(f *testing.F) {
	fix, _ := os.ReadFile("testdata/wal/three-commits.wal")
	f.Add(fix)
	f.Add(NewBuilder(512, true, 1, 2).Frame(1, 1, 1).Frame(2, 0, 2).Bytes())
	f.Add([]byte("not a wal"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		want := int64(HeaderSize)
		for {
			fr, _, err := rd.Next()
			if err != nil {
				break
			}
			if fr.Offset != want {
				t.Fatalf("frame at %d, want %d", fr.Offset, want)
			}
			want += rd.Header().FrameSize()
		}
		if got := rd.Pos().Offset; got != want || got > int64(len(data)) {
			t.Fatalf("end %d, want %d (data %d)", got, want, len(data))
		}
	})
}
