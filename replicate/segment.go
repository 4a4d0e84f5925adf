package replicate

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/walsync/walsync/internal/ltxenc"
	"github.com/walsync/walsync/internal/wal"

	"github.com/superfly/ltx"
)

// segment is one encoded LTX file, spooled and waiting to be uploaded.
type segment struct {
	level   int
	minTXID ltx.TXID
	maxTXID ltx.TXID
	ts      time.Time
	data    *spool
	commit  uint32 // database size in pages after the segment
	pages   int
	file    string    // durable spool copy (in-app databases), removed once uploaded
	readAt  time.Time // when the WAL was read: every commit before it is in the segment

	encoding bool     // a snapshot still being encoded (its TXID is taken)
	raw      *rawTail // a raw WAL copy, encoded into data before its upload
}

// close releases the segment's spooled data.
func (s *segment) close() error {
	if s == nil {
		return nil
	}
	if s.raw != nil {
		s.raw.close()
		s.raw = nil
	}
	if s.data == nil {
		return nil
	}
	err := s.data.Close()
	s.data = nil
	return err
}

// encodeSegment encodes the committed transactions found by scan as one
// LTX file with the given TXID, reading page data from the WAL again.
//
// store, if not nil, turns each page into the bytes the database file
// stores (an in-app VFS codec: encryption, checksums).
func encodeSegment(w io.Writer, scan *walScan, txid ltx.TXID, ts time.Time, store pageStore) error {
	lw, err := ltxenc.NewWriter(w, ltx.Header{
		Version:   ltx.Version,
		Flags:     ltx.HeaderFlagNoChecksum,
		PageSize:  scan.hdr.PageSize,
		Commit:    scan.commit,
		MinTXID:   txid,
		MaxTXID:   txid,
		Timestamp: ts.UnixMilli(),
		WALOffset: scan.from.Offset,
		WALSize:   scan.bytes(),
		WALSalt1:  scan.hdr.Salt1,
		WALSalt2:  scan.hdr.Salt2,
	})
	if err != nil {
		return fmt.Errorf("encode ltx header: %w", err)
	}
	defer lw.Release()
	buf := pageBuf(scan.hdr.PageSize)
	defer pageBufs.Put(buf)
	for _, p := range scan.pages {
		off := scan.hdr.FrameOffset(int64(p.frame)) + wal.FrameHeaderSize
		if _, err := scan.r.ReadAt(*buf, off); err != nil {
			return fmt.Errorf("read wal page %d at %d: %w", p.pgno, off, err)
		}
		page, err := store.apply(p.pgno, *buf)
		if err != nil {
			return err
		}
		if err := lw.Page(p.pgno, page); err != nil {
			return err
		}
	}
	return lw.Close()
}

// pageStore turns a page read as plaintext into the bytes the database
// file stores; nil leaves pages as they are.
type pageStore func(pgno uint32, page []byte) ([]byte, error)

func (s pageStore) apply(pgno uint32, page []byte) ([]byte, error) {
	if s == nil {
		return page, nil
	}
	out, err := s(pgno, page)
	if err != nil {
		return nil, fmt.Errorf("encode page %d: %w", pgno, err)
	}
	return out, nil
}

// pageBufs recycles page-sized buffers.
var pageBufs sync.Pool

// pageBuf returns a pooled buffer of n bytes; return it to pageBufs.
func pageBuf(n uint32) *[]byte {
	if b, ok := pageBufs.Get().(*[]byte); ok && uint32(cap(*b)) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

// encodeSnapshot encodes the whole database as an LTX snapshot (minimum
// TXID 1, maximum txid): every page from 1 to the database size, taken from
// the overlay when it has a committed WAL copy of it and from the database
// file otherwise. The caller must keep checkpoints from writing the database
// file while it runs. ov may be nil: the database file alone is the state.
//
// pos, the WAL position the snapshot ends at (zero: none), is recorded in
// the header so that replication can resume from it.
func encodeSnapshot(w io.Writer, db io.ReaderAt, dbSize int64, dh dbHeader, ov *overlay, pos wal.Pos, txid ltx.TXID, ts time.Time, store pageStore) (commit uint32, err error) {
	pageSize := dh.pageSize
	commit = dh.pageCount
	if commit == 0 || int64(commit)*int64(pageSize) > dbSize {
		commit = uint32(dbSize / int64(pageSize))
	}
	hdr := ltx.Header{
		Version:   ltx.Version,
		Flags:     ltx.HeaderFlagNoChecksum,
		PageSize:  pageSize,
		MinTXID:   1,
		MaxTXID:   txid,
		Timestamp: ts.UnixMilli(),
		WALOffset: pos.Offset,
		WALSalt1:  pos.Salt1,
		WALSalt2:  pos.Salt2,
	}
	var pgnos []uint32
	if ov != nil {
		if ov.commit != 0 {
			commit = ov.commit
		}
		pgnos = ov.pgnos
	}
	if commit == 0 {
		return 0, errors.New("database is empty")
	}
	hdr.Commit = commit
	lw, err := ltxenc.NewWriter(w, hdr)
	if err != nil {
		return 0, fmt.Errorf("encode ltx header: %w", err)
	}
	defer lw.Release()
	bp := pageBuf(pageSize)
	defer pageBufs.Put(bp)
	buf := *bp
	lockPgno := ltx.LockPgno(pageSize)
	i := 0
	for pgno := uint32(1); pgno <= commit; pgno++ {
		for i < len(pgnos) && pgnos[i] < pgno {
			i++
		}
		if pgno == lockPgno {
			continue
		}
		if i < len(pgnos) && pgnos[i] == pgno {
			if _, err := ov.r.ReadAt(buf, int64(i)*int64(pageSize)); err != nil {
				return 0, fmt.Errorf("read wal page %d: %w", pgno, err)
			}
		} else if err := readPage(db, buf, pgno); err != nil {
			return 0, err
		}
		page, err := store.apply(pgno, buf)
		if err != nil {
			return 0, err
		}
		if err := lw.Page(pgno, page); err != nil {
			return 0, err
		}
	}
	if err := lw.Close(); err != nil {
		return 0, err
	}
	return commit, nil
}

// readPage reads page pgno of the database file into buf; a page past the
// end of the file reads as zeros.
func readPage(db io.ReaderAt, buf []byte, pgno uint32) error {
	off := int64(pgno-1) * int64(len(buf))
	n, err := db.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read database page %d: %w", pgno, err)
	}
	clear(buf[n:])
	return nil
}
