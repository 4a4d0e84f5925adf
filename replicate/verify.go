package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/superfly/ltx"
)

// Restore verification: what a chain of LTX files must satisfy before its
// state is trusted. The checks are separate from the download loop so that
// a planner that downloads in parallel can run them in order.
//
// A file is applied only if its header continues the state the files
// before it established ([chainState.checkHeader]), each page is checked
// before it is written ([pageCheck]), and the file agrees with the other
// files of the target that end at the same TXID ([checkPeers]).

// maxPageCount is the largest database size in pages SQLite allows
// (SQLITE_MAX_PAGE_COUNT), the sanity limit on a header's commit field.
// A restore also refuses a file whose database would not fit in the free
// space of the output's file system ([checkSpace]).
const maxPageCount = 4294967294

// ErrChainBroken is returned when the files of a restore plan do not form
// one verifiable chain: a gap, a file that disagrees with the state it
// applies to or with another file ending at the same TXID, or a header
// value its pages do not back.
var ErrChainBroken = errors.New("backup chain broken")

// verifyPlan checks a plan by its keys alone: it starts with a snapshot
// (minimum TXID 1) and every later file continues the TXIDs before it
// (overlapping is allowed, skipping is not).
func verifyPlan(plan []ltxFile) error {
	var cur ltx.TXID
	for i, f := range plan {
		switch {
		case i == 0 && f.minTXID != 1:
			return fmt.Errorf("%w: %s: first file is not a snapshot", ErrChainBroken, f.key)
		case i > 0 && (f.minTXID > cur+1 || f.maxTXID <= cur):
			return fmt.Errorf("%w: %s: not contiguous with TXID %s", ErrChainBroken, f.key, cur)
		}
		cur = f.maxTXID
	}
	return nil
}

// chainState is what the files verified and applied so far established.
type chainState struct {
	txid      ltx.TXID
	pageSize  uint32
	commit    uint32       // database size in pages
	checksum  ltx.Checksum // post-apply database checksum, 0 if not recorded
	timestamp int64        // creation time of the last file, ms
	files     int
}

// checkHeader verifies that hdr, the header of lf, may be applied to s: the
// TXIDs of its key, contiguous with s, the same page size, a commit size
// within [maxPageCount], and, when both record database checksums, a
// pre-apply checksum equal to the state's post-apply checksum.
func (s *chainState) checkHeader(lf ltxFile, hdr ltx.Header) error {
	if err := checkHeaderKey(lf, hdr); err != nil {
		return err
	}
	switch {
	case s.files == 0 && !hdr.IsSnapshot():
		return fmt.Errorf("%w: %s: first file is not a snapshot", ErrChainBroken, lf.key)
	case s.files > 0 && (hdr.MinTXID > s.txid+1 || hdr.MaxTXID <= s.txid):
		return fmt.Errorf("%w: %s: not contiguous with TXID %s", ErrChainBroken, lf.key, s.txid)
	case s.files > 0 && hdr.PageSize != s.pageSize:
		return fmt.Errorf("%w: %s: page size %d differs from %d", ErrChainBroken, lf.key, hdr.PageSize, s.pageSize)
	case hdr.Commit == 0 || hdr.Commit > maxPageCount:
		return fmt.Errorf("%w: %s: database size %d pages is out of range", ErrChainBroken, lf.key, hdr.Commit)
	case s.files > 0 && !hdr.IsSnapshot() && !hdr.NoChecksum() && s.checksum != 0 &&
		hdr.MinTXID == s.txid+1 && hdr.PreApplyChecksum != s.checksum:
		return fmt.Errorf("%w: %s: pre-apply checksum %s differs from the checksum %s after TXID %s",
			ErrChainBroken, lf.key, hdr.PreApplyChecksum, s.checksum, s.txid)
	}
	return nil
}

// checkHeaderKey verifies that hdr, the header of lf, has the TXIDs of
// its key.
func checkHeaderKey(lf ltxFile, hdr ltx.Header) error {
	if hdr.MinTXID != lf.minTXID || hdr.MaxTXID != lf.maxTXID {
		return fmt.Errorf("%w: %s: header TXIDs %s-%s do not match the key", ErrChainBroken, lf.key, hdr.MinTXID, hdr.MaxTXID)
	}
	return nil
}

// apply records a file as applied.
func (s *chainState) apply(hdr ltx.Header, tr ltx.Trailer) {
	s.txid, s.pageSize, s.commit, s.timestamp = hdr.MaxTXID, hdr.PageSize, hdr.Commit, hdr.Timestamp
	s.checksum = 0
	if !hdr.NoChecksum() {
		s.checksum = tr.PostApplyChecksum
	}
	s.files++
}

// pageCheck checks the page numbers of one file as they are decoded, before
// each page is written: every page is within the file's database size and
// is not the lock page, and a file that grows the database holds every new
// page, in order (SQLite writes each page it adds). A snapshot grows the
// database from nothing, so it must hold every page. Together with the
// commit bound this keeps a restored file no larger than the pages the
// backup actually holds.
type pageCheck struct {
	key    string
	commit uint32 // the file's database size
	prev   uint32 // the database size it applies to (0 for a snapshot)
	next   uint32 // the next new page expected
	lock   uint32
}

func newPageCheck(key string, hdr ltx.Header, prev uint32) *pageCheck {
	if hdr.IsSnapshot() {
		prev = 0
	}
	p := &pageCheck{key: key, commit: hdr.Commit, prev: prev, next: prev + 1, lock: ltx.LockPgno(hdr.PageSize)}
	if p.next == p.lock {
		p.next++
	}
	return p
}

// page checks the next decoded page number.
func (p *pageCheck) page(pgno uint32) error {
	switch {
	case pgno == 0 || pgno > p.commit:
		return fmt.Errorf("%w: %s: page %d is beyond the database size %d", ErrChainBroken, p.key, pgno, p.commit)
	case pgno == p.lock:
		return fmt.Errorf("%w: %s: holds the lock page %d", ErrChainBroken, p.key, pgno)
	case pgno > p.prev && pgno != p.next:
		return fmt.Errorf("%w: %s: page %d missing: the database grows from %d to %d pages", ErrChainBroken, p.key, p.next, p.prev, p.commit)
	case pgno > p.prev:
		p.next++
		if p.next == p.lock {
			p.next++
		}
	}
	return nil
}

// done checks that every new page was present.
func (p *pageCheck) done() error {
	if p.commit > p.prev && p.next <= p.commit {
		return fmt.Errorf("%w: %s: declares %d pages but holds new pages only up to %d", ErrChainBroken, p.key, p.commit, p.next-1)
	}
	return nil
}

// checkPeers verifies an applied file against the other files of the
// target ending at the same TXID (a compaction and the segments it was
// made from, two compactions, a snapshot): they describe one database
// state, so they must agree on its size in pages, non-snapshot files on
// their creation time (a compaction keeps its newest input's), and files
// that record database checksums on the post-apply checksum. A file that
// claims a range it does not hold (a segment's pages under a compacted
// file's name) disagrees with the segment that really ends there. Only the
// peers' headers (and trailers, when both record checksums) are read.
func checkPeers(ctx context.Context, store Storage, files []ltxFile, lf ltxFile, hdr ltx.Header, tr ltx.Trailer) error {
	for _, g := range files {
		if g.key == lf.key || g.maxTXID != lf.maxTXID {
			continue
		}
		ghdr, err := fetchHeader(ctx, store, g.key)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrChainBroken, g.key, err)
		}
		switch {
		case ghdr.Commit != hdr.Commit:
			return fmt.Errorf("%w: %s: database size %d pages disagrees with %s (%d pages)", ErrChainBroken, lf.key, hdr.Commit, g.key, ghdr.Commit)
		case !hdr.IsSnapshot() && !ghdr.IsSnapshot() && ghdr.Timestamp != hdr.Timestamp:
			return fmt.Errorf("%w: %s: creation time %d disagrees with %s (%d)", ErrChainBroken, lf.key, hdr.Timestamp, g.key, ghdr.Timestamp)
		}
		if hdr.NoChecksum() || ghdr.NoChecksum() || tr.PostApplyChecksum == 0 || g.size < ltx.HeaderSize+ltx.TrailerSize {
			continue
		}
		gtr, err := fetchTrailer(ctx, store, g)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrChainBroken, g.key, err)
		}
		if gtr.PostApplyChecksum != 0 && gtr.PostApplyChecksum != tr.PostApplyChecksum {
			return fmt.Errorf("%w: %s: post-apply checksum %s disagrees with %s (%s)", ErrChainBroken, lf.key, tr.PostApplyChecksum, g.key, gtr.PostApplyChecksum)
		}
	}
	return nil
}

// fetchTrailer reads the trailer of an LTX file with a range GET (not
// covered by the object's SHA-256: used only to compare, never to trust).
func fetchTrailer(ctx context.Context, store Storage, f ltxFile) (ltx.Trailer, error) {
	rc, err := store.Get(ctx, f.key, f.size-ltx.TrailerSize, ltx.TrailerSize)
	if err != nil {
		return ltx.Trailer{}, err
	}
	defer rc.Close()
	b := make([]byte, ltx.TrailerSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return ltx.Trailer{}, fmt.Errorf("read trailer: %w", err)
	}
	var tr ltx.Trailer
	if err := tr.UnmarshalBinary(b); err != nil {
		return ltx.Trailer{}, fmt.Errorf("trailer: %w", err)
	}
	return tr, nil
}

// checkDBChecksum verifies a restored database file against the post-apply
// checksum its last file recorded (LTX's rolling checksum: the XOR of every
// page's CRC-64 but the lock page's), when one was recorded.
func checkDBChecksum(r io.Reader, s chainState, key string) error {
	if s.checksum == 0 {
		return nil
	}
	got, err := ltx.ChecksumReader(r, int(s.pageSize))
	if err != nil {
		return err
	}
	if got != s.checksum {
		return fmt.Errorf("%w: %s: restored database checksum %s differs from the recorded %s", ErrChainBroken, key, got, s.checksum)
	}
	return nil
}
