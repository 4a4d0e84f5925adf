package replicate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/walsync/walsync/internal/wal"

	"github.com/superfly/ltx"
)

// remoteState summarises what the target holds for one database.
type remoteState struct {
	last     ltxFile    // file holding the highest TXID; zero if none
	hdr      ltx.Header // header of last
	snapshot ltxFile    // newest snapshot; zero if none
	snapTime time.Time  // its creation time
	corrupt  error      // last does not verify (then hdr is zero)
}

// loadRemoteState lists the newest snapshot and the segments after it and
// reads the newest file whole, verifying it (see readVerified) before its
// header is trusted; check, if not nil, also compares it with the local
// WAL. It lists only the snapshot level and the segments written since the
// newest snapshot. A newest file that does not verify is reported in
// rs.corrupt, not as an error: the database then needs a snapshot.
func loadRemoteState(ctx context.Context, store Storage, name string, check frameCheck) (remoteState, error) {
	var rs remoteState
	prefix := levelPrefix(name, SnapshotLevel)
	for obj, err := range store.List(ctx, prefix, "") {
		if err != nil {
			return rs, err
		}
		f, err := parseLTXKey(prefix, obj.Key, SnapshotLevel)
		if err != nil || f.minTXID != 1 {
			continue // not an LTX snapshot; never trusted
		}
		if f.maxTXID >= rs.snapshot.maxTXID {
			f.size = obj.Size
			rs.snapshot, rs.snapTime = f, obj.ModTime
		}
	}
	rs.last = rs.snapshot
	prefix = levelPrefix(name, SegmentLevel)
	after := ""
	if rs.snapshot.maxTXID > 0 {
		after = prefix + ltx.FormatFilename(rs.snapshot.maxTXID, ^ltx.TXID(0))
	}
	for obj, err := range store.List(ctx, prefix, after) {
		if err != nil {
			return rs, err
		}
		f, err := parseLTXKey(prefix, obj.Key, SegmentLevel)
		if err != nil {
			continue
		}
		if f.maxTXID > rs.last.maxTXID {
			f.size = obj.Size
			rs.last = f
		}
	}
	if rs.last.maxTXID == 0 {
		return rs, nil
	}
	hdr, err := readVerified(ctx, store, rs.last, check)
	var bad *corruptError
	if errors.As(err, &bad) {
		rs.corrupt = bad
		return rs, nil
	} else if err != nil {
		return rs, err
	}
	rs.hdr = hdr
	if rs.last == rs.snapshot {
		rs.snapTime = time.UnixMilli(hdr.Timestamp)
	}
	return rs, nil
}

// maxClockSkew is how far in the future the newest file's timestamp may be
// before it is taken for a damaged or foreign one.
const maxClockSkew = 5 * time.Minute

// frameCheck returns the last WAL frame of the range an LTX header records
// (its page number and content) as the local WAL holds it, or 0 when there
// is nothing to compare.
type frameCheck func(hdr ltx.Header) (pgno uint32, page []byte)

// corruptError is a newest file that does not hold what it claims.
type corruptError struct {
	key string
	err error
}

func (e *corruptError) Error() string { return fmt.Sprintf("%s does not verify: %v", e.key, e.err) }
func (e *corruptError) Unwrap() error { return e.err }

// readVerified reads the LTX file f whole and returns its header once it
// is proven: the stored SHA-256 (when the object carries one) and the LTX
// file checksum match, the header is valid and names f's TXIDs, and, if
// check gives a frame, the file holds that page with that content (so a
// header that records more of the WAL than the file holds is refused). A
// file that fails is a *corruptError; a failed read is returned as is.
func readVerified(ctx context.Context, store Storage, f ltxFile, check frameCheck) (ltx.Header, error) {
	rc, err := store.Get(ctx, f.key, 0, -1)
	if err != nil {
		return ltx.Header{}, err
	}
	defer rc.Close()
	tr := &readErr{r: rc}
	bad := func(err error) (ltx.Header, error) {
		if tr.err != nil && !errors.Is(tr.err, ErrChecksum) && !errors.Is(tr.err, io.ErrUnexpectedEOF) {
			return ltx.Header{}, fmt.Errorf("read %s: %w", f.key, tr.err)
		}
		return ltx.Header{}, &corruptError{key: f.key, err: err}
	}
	dec := ltx.NewDecoder(tr)
	if err := dec.DecodeHeader(); err != nil {
		return bad(err)
	}
	hdr := dec.Header()
	if err := hdr.Validate(); err != nil {
		return bad(err)
	}
	if hdr.MinTXID != f.minTXID || hdr.MaxTXID != f.maxTXID {
		return bad(fmt.Errorf("header holds TXIDs %s-%s", hdr.MinTXID, hdr.MaxTXID))
	}
	var want uint32
	var wantPage []byte
	if check != nil {
		want, wantPage = check(hdr)
	}
	found := want == 0
	buf := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, buf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return bad(err)
		}
		if want != 0 && ph.Pgno == want {
			if !bytes.Equal(buf, wantPage) {
				return bad(fmt.Errorf("page %d differs from the last WAL frame its header records", want))
			}
			found = true
		}
	}
	if err := dec.Close(); err != nil {
		return bad(err)
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return bad(err)
	}
	if !found {
		return bad(fmt.Errorf("page %d of the last WAL frame its header records is missing", want))
	}
	return hdr, nil
}

// readErr remembers the error of the reader it wraps.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// lastFrame reads, from the local WAL, the last frame of the range hdr
// records (a frameCheck). It reads without d.mu: the WAL is pinned while
// the database is new, and findWALPos checks the chain under d.mu later.
func (d *DB) lastFrame(hdr ltx.Header) (uint32, []byte) {
	if hdr.WALSize == 0 || (hdr.WALSalt1 == 0 && hdr.WALSalt2 == 0) || (d.app != nil && d.app.codec != nil) {
		return 0, nil // nothing to compare, or the WAL holds other bytes (a codec)
	}
	f, err := os.Open(d.walPath)
	if err != nil {
		return 0, nil
	}
	defer f.Close()
	var wh [wal.HeaderSize]byte
	if _, err := f.ReadAt(wh[:], 0); err != nil {
		return 0, nil
	}
	wHdr, err := wal.ParseHeader(wh[:])
	if err != nil || wHdr.Salt1 != hdr.WALSalt1 || wHdr.Salt2 != hdr.WALSalt2 || wHdr.PageSize != hdr.PageSize {
		return 0, nil
	}
	frameSize := int64(wal.FrameHeaderSize) + int64(hdr.PageSize)
	off := hdr.WALOffset + hdr.WALSize - frameSize
	if off < wal.HeaderSize || (off-wal.HeaderSize)%frameSize != 0 {
		return 0, nil // findWALPos refuses such a position
	}
	buf := make([]byte, frameSize)
	if _, err := f.ReadAt(buf, off); err != nil {
		return 0, nil
	}
	if binary.BigEndian.Uint32(buf[8:]) != hdr.WALSalt1 || binary.BigEndian.Uint32(buf[12:]) != hdr.WALSalt2 {
		return 0, nil
	}
	return binary.BigEndian.Uint32(buf[0:]), buf[wal.FrameHeaderSize:]
}

// fetchHeader reads and validates the header of one LTX object.
func fetchHeader(ctx context.Context, store Storage, key string) (ltx.Header, error) {
	rc, err := store.Get(ctx, key, 0, ltx.HeaderSize)
	if err != nil {
		return ltx.Header{}, err
	}
	defer rc.Close()
	b := make([]byte, ltx.HeaderSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return ltx.Header{}, fmt.Errorf("read header of %s: %w", key, err)
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		return ltx.Header{}, fmt.Errorf("header of %s: %w", key, err)
	}
	if err := hdr.Validate(); err != nil {
		return ltx.Header{}, fmt.Errorf("header of %s: %w", key, err)
	}
	return hdr, nil
}

// resume reads the target for a database in stateNew, opening its files
// first if they are not: the newest file records the WAL generation and
// offset it ended at. Replication continues from there if the WAL still
// holds that generation and its frames up to that offset form a valid
// chain, or if the record left when that generation closed proves nothing
// was written since; otherwise a snapshot is needed. The network I/O
// happens without d.mu, so the in-app gate is never held up by it.
func (d *DB) resume(ctx context.Context) error {
	if err := d.mu.lock(ctx); err != nil {
		return err
	}
	if d.st != stateNew {
		d.mu.unlock()
		return nil
	}
	if d.pin.db == nil {
		if err := d.openLocked(ctx); err != nil {
			d.mu.unlock()
			return err
		}
	}
	d.mu.unlock()
	if d.app != nil {
		if err := d.uploadSpool(ctx); err != nil {
			return fmt.Errorf("upload spooled segments: %w", err)
		}
	}
	if d.leaseLater {
		if err := d.r.fence.acquireLate(ctx, d.name); err != nil {
			d.unpinNew(ctx)
			return fmt.Errorf("lease: %w", err)
		}
		d.leaseLater = false
	}
	rs, err := loadRemoteState(ctx, d.r.store, d.name, d.lastFrame)
	if err != nil {
		d.unpinNew(ctx)
		return fmt.Errorf("read target: %w", err)
	}
	if err := d.mu.lock(ctx); err != nil {
		return err
	}
	defer d.mu.unlock()
	if d.st != stateNew {
		return nil
	}
	return d.applyRemote(rs)
}

// unpinNew releases the pin of a watched database whose target could not
// be read: the application's WAL must not grow for as long as the target
// is unreachable (a walsync started, or restarted, during an outage). The
// next attempt pins it again first; if the WAL was restarted meanwhile the
// resume cannot prove the chain and takes a snapshot, as after any stop.
func (d *DB) unpinNew(ctx context.Context) {
	if d.app != nil || d.mu.lock(context.WithoutCancel(ctx)) != nil {
		return
	}
	defer d.mu.unlock()
	if d.st == stateNew && d.pin.db != nil {
		d.releasePin()
	}
}

// applyRemote sets the replicated position from the target's state and
// takes the resume transition. The caller holds d.mu.
func (d *DB) applyRemote(rs remoteState) error {
	d.pos, d.stamp = wal.Pos{}, fileStamp{}
	if rs.last.maxTXID == 0 {
		d.txid = 0
		d.apply(evUnproven, whyFirst)
		return nil
	}
	if rs.corrupt != nil {
		// The chain in the target ends at a file that cannot be trusted:
		// a snapshot after it makes the latest state restorable again.
		d.txid, d.snapAt = rs.last.maxTXID, rs.snapTime
		d.logger().Error("the newest file in the target does not verify; taking a snapshot after it", "error", rs.corrupt)
		d.apply(evUnproven, "newest file in the target does not verify")
		return nil
	}
	if ts := time.UnixMilli(rs.hdr.Timestamp); ts.After(time.Now().Add(maxClockSkew)) {
		// Its timestamp would hold every later one (they never decrease):
		// start afresh, with timestamps from this clock.
		d.txid, d.snapAt = rs.last.maxTXID, rs.snapTime
		d.apply(evUnproven, fmt.Sprintf("newest file in the target has a timestamp in the future (%s)", ts.UTC().Format(time.RFC3339)))
		return nil
	}
	d.txid, d.lastTS, d.snapAt = rs.last.maxTXID, rs.hdr.Timestamp, rs.snapTime
	if rs.hdr.WALSalt1 == 0 && rs.hdr.WALSalt2 == 0 {
		if d.resumeClosed(rs) {
			d.logger().Info("resuming over an unchanged database file", "txid", d.txid.String())
			return nil
		}
		d.apply(evUnproven, "no WAL position recorded in the target to resume from")
		return nil
	}
	pos, err := d.findWALPos(rs.hdr.WALSalt1, rs.hdr.WALSalt2, rs.hdr.WALOffset+rs.hdr.WALSize)
	if errors.Is(err, errNoPos) {
		if d.resumeClosed(rs) {
			d.logger().Info("resuming after its WAL closed", "txid", d.txid.String())
			return nil
		}
		d.apply(evUnproven, "WAL changed while walsync was not running")
		return nil
	} else if err != nil {
		return err
	}
	d.pos = pos
	d.apply(evResumed, "")
	d.logger().Info("resuming", "txid", d.txid.String(), "wal_offset", pos.Offset)
	return nil
}

// resumeClosed continues from the record left when the generation the
// target ends with closed: if the target still ends where the record says,
// and either the VFS saw SQLite announce the next generation (in-app) or
// the database file is unchanged since, nothing was written outside the
// chain. The caller holds d.mu.
func (d *DB) resumeClosed(rs remoteState) bool {
	if d.app != nil && d.app.early {
		return false
	}
	rec, ok := readRecord(d.recordDir())
	if !ok || rec.After != d.txid || rec.Gen != [2]uint32{rs.hdr.WALSalt1, rs.hdr.WALSalt2} {
		return false
	}
	switch {
	case d.app != nil && rec.Next != ([2]uint32{}):
		// SQLite announced the next generation; continuing with it proves
		// nothing was lost only if the WAL holds it (a connection that
		// does not use the VFS may have written, checkpointed and deleted
		// the WAL while no replicator ran).
		next := rec.Next
		d.app.next = &next
		wf, err := d.openWAL()
		if err != nil || wf == nil {
			return false
		}
		held := d.app.nextIs(wf.hdr)
		wf.f.Close()
		if !held {
			return false
		}
	case rec.Stamp != (fileStamp{}):
		if cur, err := stampOf(d.path); err != nil || cur != rec.Stamp {
			return false
		}
		d.stamp = rec.Stamp
	default:
		return false
	}
	d.apply(evResumedClosed, "")
	return true
}

// errNoPos means the WAL no longer holds the position being looked for.
var errNoPos = errors.New("wal position not found")

// findWALPos returns the position at offset end in the WAL generation with
// the given salts, after checking that the frames before it are valid and
// that end is a transaction boundary.
func (d *DB) findWALPos(salt1, salt2 uint32, end int64) (wal.Pos, error) {
	wf, err := d.openWAL()
	if errors.Is(err, wal.ErrHeader) {
		return wal.Pos{}, errNoPos
	} else if err != nil {
		return wal.Pos{}, err
	} else if wf == nil {
		return wal.Pos{}, errNoPos
	}
	defer wf.f.Close()
	rd := wal.NewReaderAt(wf.r, wf.hdr, wf.hdr.Start())
	if hdr := rd.Header(); hdr.Salt1 != salt1 || hdr.Salt2 != salt2 {
		return wal.Pos{}, errNoPos
	}
	atCommit := true
	for rd.Pos().Offset < end {
		fr, _, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return wal.Pos{}, errNoPos
		} else if err != nil {
			return wal.Pos{}, err
		}
		atCommit = fr.Commit != 0
	}
	if rd.Pos().Offset != end || !atCommit {
		return wal.Pos{}, errNoPos
	}
	return rd.Pos(), nil
}
