package replicate

import (
	"bufio"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/superfly/ltx"
)

// mergeWidth is the most downloaded files merged in one pass (each holds
// an open file and a read buffer). A longer plan is merged in windows of
// this many files, applied one after another.
var mergeWidth = 128

// mergeReadBuffer is the read buffer of each file in a merge; a file larger
// than bigReadFile (a snapshot, usually alone) gets bigReadBuffer, which
// divides the read system calls of a 1 GiB restore by 8.
const (
	mergeReadBuffer = 32 << 10
	bigReadFile     = 32 << 20
	bigReadBuffer   = 256 << 10
)

// mergeWriteBuffer is the most bytes of consecutive pages written at once.
const mergeWriteBuffer = 1 << 20

// mergeFiles writes the state that applying files in order on the
// database in out (of prev pages; files[0] may be a snapshot) produces: a
// k-way merge by page number over the files, in which the version of a
// page from the latest file holding it wins, so each page is written once.
// prevs[i] is the database size file i applies to, from the chain pass;
// each page read passes [pageCheck] with it before anything is written.
// Pages beyond the last file's size are not written and out is truncated
// to it.
//
// This equals applying the files one after another and truncating after
// each: a page beyond a later file's size that is within the final size
// was added again by some later file ([pageCheck]: a file that grows the
// database holds every page it adds), which then holds its newest version.
func mergeFiles(ctx context.Context, out *os.File, files []fetched, prevs []uint32) error {
	h := make(cursorHeap, 0, len(files))
	defer func() {
		for _, c := range h {
			c.f.Close()
		}
	}()
	pageSize := files[0].hdr.PageSize
	for i, g := range files {
		c, err := openCursor(g, i, prevs[i])
		if err != nil {
			return err
		}
		if c.eof {
			continue
		}
		h = append(h, c)
	}
	heap.Init(&h)
	limit := files[len(files)-1].hdr.Commit
	w := runWriter{f: out, buf: make([]byte, 0, min(mergeWriteBuffer, int64(limit)*int64(pageSize)))}
	for n := 0; len(h) > 0; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		top := h[0]
		pgno := top.ph.Pgno
		if pgno <= limit {
			if err := w.write(int64(pgno-1)*int64(pageSize), top.buf); err != nil {
				return err
			}
		}
		// Advance every file holding pgno: the winner first, then the
		// older versions, which are read (and checked) but not written.
		for len(h) > 0 && h[0].ph.Pgno == pgno {
			if err := h.advance(); err != nil {
				return err
			}
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	return out.Truncate(int64(limit) * int64(pageSize))
}

// cursor reads one downloaded file page by page during a merge.
type cursor struct {
	idx  int // position in the merge: a later file's page wins
	key  string
	f    *os.File
	dec  *ltx.Decoder
	pc   *pageCheck
	ph   ltx.PageHeader
	buf  []byte
	eof  bool
	prev uint32 // the last page number read
}

// openCursor opens a downloaded file and reads its first page.
func openCursor(g fetched, idx int, prev uint32) (*cursor, error) {
	f, err := os.Open(g.path)
	if err != nil {
		return nil, err
	}
	rb := mergeReadBuffer
	if g.lf.size > bigReadFile {
		rb = bigReadBuffer
	}
	dec := ltx.NewDecoder(newFrameGuard(bufio.NewReaderSize(f, rb)))
	dec.SetRetainPageIndex(false)
	if err := dec.DecodeHeader(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", g.lf.key, err)
	}
	if dec.Header() != g.hdr {
		f.Close()
		return nil, fmt.Errorf("%s: downloaded file changed", g.lf.key)
	}
	c := &cursor{idx: idx, key: g.lf.key, f: f, dec: dec, pc: newPageCheck(g.lf.key, g.hdr, prev), buf: make([]byte, g.hdr.PageSize)}
	if err := c.next(); err != nil {
		f.Close()
		return nil, err
	}
	if c.eof {
		f.Close()
	}
	return c, nil
}

// next reads the next page and checks its number, or at the end of the
// pages the file checksum and that every page the file adds was present.
func (c *cursor) next() error {
	err := c.dec.DecodePage(&c.ph, c.buf)
	if errors.Is(err, io.EOF) {
		c.eof = true
		if err := c.pc.done(); err != nil {
			return err
		}
		if err := c.dec.Close(); err != nil {
			return fmt.Errorf("%s: %w", c.key, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("%s: %w", c.key, err)
	}
	if c.ph.Pgno <= c.prev {
		return fmt.Errorf("%w: %s: page %d after page %d: pages out of order", ErrChainBroken, c.key, c.ph.Pgno, c.prev)
	}
	c.prev = c.ph.Pgno
	return c.pc.page(c.ph.Pgno)
}

// cursorHeap orders cursors by page number, the latest file first.
type cursorHeap []*cursor

func (h cursorHeap) Len() int { return len(h) }
func (h cursorHeap) Less(i, j int) bool {
	if h[i].ph.Pgno != h[j].ph.Pgno {
		return h[i].ph.Pgno < h[j].ph.Pgno
	}
	return h[i].idx > h[j].idx
}
func (h cursorHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)   { *h = append(*h, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// advance reads the next page of the top cursor, dropping it (and closing
// its file) at its end.
func (h *cursorHeap) advance() error {
	c := (*h)[0]
	if err := c.next(); err != nil {
		return err
	}
	if c.eof {
		heap.Pop(h)
		return c.f.Close()
	}
	heap.Fix(h, 0)
	return nil
}

// runWriter gathers consecutive pages into one write.
type runWriter struct {
	f   *os.File
	buf []byte
	off int64 // file offset of buf[0]
}

func (w *runWriter) write(off int64, page []byte) error {
	if len(page) > cap(w.buf) {
		_, err := w.f.WriteAt(page, off)
		return err
	}
	if len(w.buf) > 0 && (off != w.off+int64(len(w.buf)) || len(w.buf)+len(page) > cap(w.buf)) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.off = off
	}
	w.buf = append(w.buf, page...)
	return nil
}

func (w *runWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.WriteAt(w.buf, w.off)
	w.buf = w.buf[:0]
	return err
}
