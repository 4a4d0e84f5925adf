package replicate

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/walsync/walsync/internal/wal"
)

// pageRef locates the newest committed copy of a page in a WAL generation.
type pageRef struct {
	pgno  uint32
	frame uint32 // 1-based frame number
}

// walScan is the set of whole committed transactions found in a WAL range.
type walScan struct {
	r      io.ReaderAt
	hdr    wal.Header
	from   wal.Pos   // position the scan started at
	end    wal.Pos   // position after the last commit frame (== from if none)
	commit uint32    // database size in pages after the last commit
	txns   int       // number of commit frames seen
	pages  []pageRef // newest frame per page, sorted by pgno, pgno <= commit
	full   bool      // stopped at maxBytes: more committed frames may follow
	ahead  bool      // a valid commit frame follows maxFrame: being committed now
}

// bytes returns the number of WAL bytes covered by the scan.
func (s *walScan) bytes() int64 { return s.end.Offset - s.from.Offset }

// empty reports whether the scan found no committed transaction.
func (s *walScan) empty() bool { return s.txns == 0 }

// scanWAL reads frames of the generation hdr from pos and returns the
// committed transactions found, stopping at the first invalid frame, after
// frame maxFrame (0: no limit; the WAL-index's last commit frame, so that a
// commit frame written but not yet acknowledged is left for later, and
// reported as ahead so that the caller looks again), or once
// more than maxBytes have been read at a transaction boundary (maxBytes <= 0
// means no limit). Frames after the last commit frame are ignored: they
// belong to a transaction that is still being written or was rolled back.
//
// Memory is 8 bytes per frame read; page data is not kept.
func scanWAL(r io.ReaderAt, hdr wal.Header, pos wal.Pos, maxBytes int64, maxFrame uint32) (*walScan, error) {
	s := &walScan{r: r, hdr: hdr, from: pos, end: pos}
	ra := newReadAhead(r)
	defer ra.put()
	rd := wal.NewReaderAt(ra, hdr, pos)
	bp := pageBuf(uint32(hdr.FrameSize()))
	defer pageBufs.Put(bp)
	rd.SetBuffer(*bp)
	var refs []pageRef
	committed := 0
	for {
		f, _, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		frame := (f.Offset-wal.HeaderSize)/hdr.FrameSize() + 1
		if frame > 1<<32-1 {
			return nil, fmt.Errorf("wal frame %d out of range", frame)
		}
		if maxFrame > 0 && frame > int64(maxFrame) {
			if f.Commit != 0 {
				s.ahead = true
				break
			}
			continue
		}
		refs = append(refs, pageRef{pgno: f.Pgno, frame: uint32(frame)})
		if f.Commit == 0 {
			continue
		}
		committed = len(refs)
		s.txns++
		s.commit = f.Commit
		s.end = rd.Pos()
		if maxBytes > 0 && s.bytes() >= maxBytes {
			s.full = true
			break
		}
	}
	s.pages = newestPages(refs[:committed], s.commit)
	return s, nil
}

// newestPages sorts refs by page number, keeps the newest frame of each
// page and drops pages beyond the final database size (the database shrank).
func newestPages(refs []pageRef, commit uint32) []pageRef {
	slices.SortFunc(refs, func(a, b pageRef) int {
		if c := cmp.Compare(a.pgno, b.pgno); c != 0 {
			return c
		}
		return cmp.Compare(a.frame, b.frame)
	})
	out := refs[:0]
	for i, r := range refs {
		if r.pgno > commit {
			break
		}
		if i+1 < len(refs) && refs[i+1].pgno == r.pgno {
			continue // a newer frame of the same page follows
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// readAheadSize is the chunk a WAL scan reads at once: a frame at a time
// would cost a system call per 4 KiB page.
const readAheadSize = 64 << 10

var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

// readAhead serves a sequential scan's reads from chunks of readAheadSize.
// Its bytes are those of the file when each chunk was read, which is all a
// scan assumes: it validates every frame and stops at the first that does
// not verify.
type readAhead struct {
	r   io.ReaderAt
	buf *[]byte
	off int64 // file offset of (*buf)[0]
	n   int   // bytes of buf read
}

func newReadAhead(r io.ReaderAt) *readAhead {
	return &readAhead{r: r, buf: readAheadBufs.Get().(*[]byte)}
}

func (ra *readAhead) put() { readAheadBufs.Put(ra.buf) }

func (ra *readAhead) ReadAt(p []byte, off int64) (int, error) {
	buf := *ra.buf
	if off >= ra.off && off+int64(len(p)) <= ra.off+int64(ra.n) {
		return copy(p, buf[off-ra.off:]), nil
	}
	if len(p) > len(buf) {
		return ra.r.ReadAt(p, off)
	}
	n, err := ra.r.ReadAt(buf, off)
	ra.off, ra.n = off, n
	if n >= len(p) {
		return copy(p, buf), nil
	}
	m := copy(p, buf[:n])
	if err == nil {
		err = io.EOF
	}
	return m, err
}
