package replicate

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/superfly/ltx"
)

// stage keeps a local copy of each segment a database uploads until a
// level-1 file covers it, so that level-1 compaction, which merges every
// segment, reads them from local disk instead of GETting them back: it
// halves the requests of a database written continuously and makes the
// compaction independent of the target's latency. The copies are in one
// unlinked file in the spool directory per active database; a segment not
// staged (uploaded by an earlier process, or dropped) is downloaded.
//
// A database's stage is bounded by maxStageBytes: beyond it, the stage is
// dropped and compaction downloads (a level-1 compaction that keeps
// failing, while the uploads go on).
type stage struct {
	mu    sync.Mutex
	f     *os.File // nil: empty
	size  int64
	files []stagedFile
}

// stagedFile is one segment in a stage.
type stagedFile struct {
	minTXID, maxTXID ltx.TXID
	off, size        int64
}

// maxStageBytes bounds the local copies of one database.
const maxStageBytes = 64 << 20

// add appends a copy of the segment in r (size bytes, read from its
// start) to the stage. A failure drops the stage: compaction downloads.
func (s *stage) add(dir string, minTXID, maxTXID ltx.TXID, r io.ReadSeeker, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+size > maxStageBytes {
		s.dropLocked()
		return
	}
	if s.f == nil {
		f, err := createUnlinked(dir, "walsync-stage-*")
		if err != nil {
			return
		}
		s.f = f
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		s.dropLocked()
		return
	}
	n, err := copyPooled(io.NewOffsetWriter(s.f, s.size), r)
	if err != nil || n != size {
		s.dropLocked()
		return
	}
	s.files = append(s.files, stagedFile{minTXID: minTXID, maxTXID: maxTXID, off: s.size, size: size})
	s.size += size
}

// copyTo writes the staged copy of f, if there is one of the same size,
// to w and reports whether it did.
func (s *stage) copyTo(f ltxFile, w io.Writer) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sf := range s.files {
		if sf.minTXID == f.minTXID && sf.maxTXID == f.maxTXID && sf.size == f.size {
			if _, err := copyPooled(w, io.NewSectionReader(s.f, sf.off, sf.size)); err != nil {
				return false, fmt.Errorf("staged copy of %s: %w", f.key, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// release drops the copies of segments ending at or before top, moving
// the others (segments uploaded since the compaction listed level 0) into
// a new file, so that the stage never grows past what is not compacted.
func (s *stage) release(dir string, top ltx.TXID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []stagedFile
	for _, sf := range s.files {
		if sf.maxTXID > top {
			keep = append(keep, sf)
		}
	}
	if len(keep) == 0 {
		s.dropLocked()
		return
	}
	if len(keep) == len(s.files) {
		return
	}
	nf, err := createUnlinked(dir, "walsync-stage-*")
	if err != nil {
		s.dropLocked()
		return
	}
	var off int64
	for i, sf := range keep {
		if _, err := copyPooled(io.NewOffsetWriter(nf, off), io.NewSectionReader(s.f, sf.off, sf.size)); err != nil {
			nf.Close()
			s.dropLocked()
			return
		}
		keep[i].off = off
		off += sf.size
	}
	s.f.Close()
	s.f, s.files, s.size = nf, keep, off
}

// copyBufs are the buffers of the copies of the stage and the compaction
// inputs: one per copy in flight, not one allocation per copy.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyPooled is io.Copy with a pooled buffer.
func copyPooled(w io.Writer, r io.Reader) (int64, error) {
	b := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(b)
	return io.CopyBuffer(w, r, *b)
}

// drop closes the stage, freeing its disk space.
func (s *stage) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked()
}

func (s *stage) dropLocked() {
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.files, s.size = nil, nil, 0
}
