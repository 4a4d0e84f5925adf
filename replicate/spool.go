package replicate

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
)

// spoolMemMax is the largest object a spool keeps in memory; anything
// bigger goes to a temporary file so a huge transaction is never held whole.
const spoolMemMax = 1 << 20

// spoolBufs recycles the in-memory buffers of small segments.
var spoolBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// spool collects an encoded object before upload: in memory up to
// spoolMemMax bytes, then in a temporary file in dir.
type spool struct {
	dir  string
	mem  *bytes.Buffer
	f    *os.File
	size int64
}

func newSpool(dir string) *spool {
	b := spoolBufs.Get().(*bytes.Buffer)
	b.Reset()
	return &spool{dir: dir, mem: b}
}

// newSpoolFor returns a spool for an object encoded from about hint bytes:
// past spoolMemMax it starts in a file, so that a large segment does not
// grow (and discard) a buffer in steps up to spoolMemMax first.
func newSpoolFor(dir string, hint int64) (*spool, error) {
	s := newSpool(dir)
	if hint > spoolMemMax {
		if err := s.spill(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Write appends p, spilling to a temporary file past spoolMemMax.
func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.mem.Len()+len(p) > spoolMemMax {
		if err := s.spill(); err != nil {
			return 0, err
		}
	}
	var n int
	var err error
	if s.f != nil {
		n, err = s.f.Write(p)
	} else {
		n, err = s.mem.Write(p)
	}
	s.size += int64(n)
	return n, err
}

// spill moves the content to an unlinked temporary file in s.dir.
func (s *spool) spill() error {
	f, err := os.CreateTemp(s.dir, ".walsync-spool-*")
	if err != nil {
		return err
	}
	// The file is only reachable through the descriptor.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(s.mem.Bytes()); err != nil {
		f.Close()
		return err
	}
	s.f = f
	s.release()
	return nil
}

// Size returns the number of bytes written.
func (s *spool) Size() int64 { return s.size }

// Reader returns a reader over the whole content, positioned at the start.
func (s *spool) Reader() (io.ReadSeeker, error) { return s.section() }

// ReaderAt returns a reader of the content at any offset.
func (s *spool) ReaderAt() (io.ReaderAt, error) { return s.section() }

// section returns the content as a reader that also reads at offsets.
func (s *spool) section() (interface {
	io.ReadSeeker
	io.ReaderAt
}, error) {
	if s.f != nil {
		return io.NewSectionReader(s.f, 0, s.size), nil
	}
	if s.mem == nil {
		return nil, errors.New("spool closed")
	}
	return bytes.NewReader(s.mem.Bytes()), nil
}

// Close releases the memory or temporary file.
func (s *spool) Close() error {
	s.release()
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}

func (s *spool) release() {
	if s.mem != nil {
		if s.mem.Cap() <= spoolMemMax*2 {
			spoolBufs.Put(s.mem)
		}
		s.mem = nil
	}
}
