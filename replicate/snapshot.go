package replicate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/wal"
)

// snapshot uploads a full copy of the database as it is after its last
// committed transaction, as a level-9 LTX file with the next TXID, and
// continues replication from the WAL position the copy ends at.
//
// Consistency without an SQLite connection: READ_LOCK(0) is held from
// before the WAL is read until the database file has been read, so no
// checkpoint copies frames into the database file meanwhile; the pin (or,
// in-app, the VFS gate) keeps frames not captured from being lost. The
// database file plus the committed frames of the current WAL generation are
// then exactly the state after the last commit frame read.
//
// d.mu is held only to read the WAL's committed pages into a spool and to
// record the outcome, never during the read of the whole database: the
// in-app WAL-reset gate, on the application's goroutine, waits for d.mu.
// The caller holds d.upMu, not d.mu.
func (d *DB) snapshot(ctx context.Context) error {
	for try := 0; ; try++ {
		err := d.snapshotOnce(ctx)
		if !errors.Is(err, errWALChanged) || try == 3 {
			return err
		}
	}
}

// errWALChanged means the WAL or the database changed while a snapshot read
// them in a way that makes the copy inconsistent.
var errWALChanged = errors.New("the WAL changed while it was read")

// snapPlan is what a snapshot reads, decided under d.mu.
type snapPlan struct {
	seg      *segment  // the pending placeholder, filled once encoded
	reason   string    // why the snapshot is taken
	ov       *overlay  // committed WAL pages over the database file; nil: the file alone
	ev       event     // evSnapshot, evSnapshotBackfilled or evSnapshotNoWAL
	pos      wal.Pos   // the position the snapshot ends at
	db       *os.File  // the database file
	ownFile  bool      // db was opened for the snapshot (unpinned)
	before   fileStamp // unpinned: the file before the read, compared after
	zero     bool      // READ_LOCK(0) taken for the snapshot
	prevPos  wal.Pos   // position before the snapshot, restored on failure
	prevTXID ltx.TXID  // last TXID before the snapshot
	size     int64     // database file size
	hdr      dbHeader  // database header
	readAt   time.Time // everything committed before it is in the snapshot
	stampNow fileStamp // evSnapshotNoWAL: the file's stamp
}

func (d *DB) snapshotOnce(ctx context.Context) error {
	if err := d.mu.lock(ctx); err != nil {
		return err
	}
	p, err := d.planSnapshot(ctx)
	d.mu.unlock()
	if err != nil {
		return err
	}
	commit, size, err := d.encodeSnapshot(p)
	if lerr := d.mu.lock(context.WithoutCancel(ctx)); lerr != nil {
		return lerr
	}
	defer d.mu.unlock()
	return d.finishSnapshot(p, commit, size, err)
}

// planSnapshot locks what the snapshot needs, copies the WAL's committed
// pages and allocates the snapshot's TXID. The caller holds d.mu.
func (d *DB) planSnapshot(ctx context.Context) (_ *snapPlan, err error) {
	p := &snapPlan{reason: d.reason, prevPos: d.pos, prevTXID: d.txid, readAt: time.Now()}
	if p.reason == "" {
		p.reason = "scheduled"
	}
	defer func() {
		if err != nil {
			d.releaseSnapshotLocks(p)
		}
	}()
	if d.app != nil {
		d.pin.openSHM(d.shmPath)
	} else if d.pin.db != nil && d.pin.shm == nil {
		if err := d.pinWAL(ctx); err != nil {
			return nil, err
		}
	}
	if d.app == nil && d.pin.slot != 0 && strings.HasPrefix(p.reason, whyChain) {
		// Frames past the break cannot be read from the WAL: once every
		// frame is copied, the database file alone is the state.
		if err := d.passiveCheckpoint(ctx); err != nil {
			return nil, err
		}
	}
	if d.pin.shm != nil && !d.pin.zero {
		if err := retryBusy(ctx, d.pin.lockZero); err != nil {
			return nil, fmt.Errorf("snapshot: wait for checkpoint: %w", err)
		}
		p.zero = true
	}
	p.db = d.pin.db
	if p.db == nil {
		// Unpinned: no application has the WAL-index open, so nothing
		// writes the database; a stamp taken before and after proves it.
		if p.before, err = stampOf(d.path); err != nil {
			return nil, err
		}
		if p.db, err = os.Open(d.path); err != nil {
			return nil, err
		}
		p.ownFile = true
	}
	if err := d.planPages(p); err != nil {
		return nil, err
	}
	if d.app != nil && p.before == (fileStamp{}) {
		// In-app, walsync takes no lock the application waits for: it
		// may leave WAL mode and write the file directly while the
		// snapshot reads it (READ_LOCK(0) only keeps checkpoints out). A
		// stamp taken before and after the read proves no such write came
		// in between; otherwise the snapshot is taken again.
		if p.before, err = stampOf(d.path); err != nil {
			return nil, err
		}
	}
	fi, err := p.db.Stat()
	if err != nil {
		return nil, err
	}
	p.size = fi.Size()
	if p.hdr, err = readDBHeader(d.dbReader(p.db)); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	txid := d.txid + 1
	ts := d.nextTimestamp()
	sp, err := newSpoolFor(d.r.opts.SpoolDir, p.size)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	p.seg = &segment{level: SnapshotLevel, minTXID: 1, maxTXID: txid, ts: ts, data: sp, readAt: p.readAt, encoding: true}
	// From here the snapshot holds its TXID: an in-app reset while it is
	// encoded captures what follows it into the next TXIDs.
	d.pending = append(d.pending, p.seg)
	d.txid, d.lastTS = txid, ts.UnixMilli()
	switch p.ev {
	case evSnapshot, evSnapshotBackfilled:
		d.pos = p.pos
	case evSnapshotNoWAL:
		d.pos = wal.Pos{}
	}
	d.apply(p.ev, "")
	return p, nil
}

// planPages decides what the snapshot reads besides the database file, and
// where replication continues after it. The caller holds d.mu.
func (d *DB) planPages(p *snapPlan) error {
	wf, err := d.openWAL()
	if errors.Is(err, wal.ErrHeader) {
		return errWALChanged // being written: look again
	} else if err != nil {
		return err
	}
	if wf == nil {
		p.ev = evSnapshotNoWAL
		p.stampNow, _ = stampOf(d.path)
		if d.app != nil && p.before == (fileStamp{}) {
			// Without a WAL an in-app database may be in a rollback
			// journal mode, written without a checkpoint: the file's stamp
			// before and after the read proves no write came in between
			// (walsync takes no lock the application could wait for: a
			// switch of journal mode needs an exclusive lock at once).
			p.before = p.stampNow
		}
		return nil
	}
	defer wf.f.Close()
	st, idx := d.pin.state()
	idx = idx && p.zero && st.salt1 == wf.hdr.Salt1 && st.salt2 == wf.hdr.Salt2
	if idx && st.nBackfill == st.mxFrame {
		// Every committed frame is in the database file, which READ_LOCK(0)
		// keeps as it is: the file alone is the state.
		pos, err := frameEnd(wf, st.mxFrame)
		if err != nil {
			return err
		}
		p.pos, p.ev = pos, evSnapshotBackfilled
		if d.app != nil {
			p.ev = evSnapshot // in-app: the VFS gate protects the WAL; no hand-over
		}
		return nil
	}
	scan, err := scanWAL(wf.r, wf.hdr, wf.hdr.Start(), 0, d.maxFrame(wf.hdr))
	if err != nil {
		return err
	}
	if idx && scan.end.Offset < wf.hdr.FrameOffset(int64(st.nBackfill)+1) {
		// The database file holds frames the checksum chain does not
		// reach: it is consistent only once every frame is copied.
		return fmt.Errorf("snapshot: %w: %s", errWALChanged, whyChain)
	}
	ov, err := copyOverlay(wf, scan, d.r.opts.SpoolDir)
	if err != nil {
		return err
	}
	if !wf.holds(scan) {
		ov.close()
		return errWALChanged
	}
	p.ov, p.pos, p.ev = ov, scan.end, evSnapshot
	if d.app == nil && d.pin.slot == 0 {
		// Watch path after a hand-over: the generation is pinned by
		// READ_LOCK(0) only; frames after the snapshot cannot be copied
		// (so the generation cannot be restarted) until a slot is back.
		p.ev = evSnapshotBackfilled
	}
	return nil
}

// encodeSnapshot reads the database file merged with the overlay and
// encodes the snapshot into its spool, without d.mu.
func (d *DB) encodeSnapshot(p *snapPlan) (commit uint32, size int64, err error) {
	ovr := p.ov
	commit, err = encodeSnapshot(p.seg.data, d.dbReader(p.db), p.size, p.hdr, ovr, p.pos, p.seg.maxTXID, p.seg.ts, d.storePage)
	if err == nil && p.before != (fileStamp{}) {
		if after, serr := stampOf(d.path); serr != nil || after != p.before {
			err = errWALChanged
		}
	}
	return commit, p.seg.data.Size(), err
}

// finishSnapshot records the outcome of an encoded snapshot, or undoes it.
// The caller holds d.mu.
func (d *DB) finishSnapshot(p *snapPlan, commit uint32, size int64, err error) error {
	if err != nil {
		// Undo: the snapshot and anything an in-app reset captured after
		// it (which only continues the snapshot) are dropped, and the
		// database stays Broken.
		if i := slices.Index(d.pending, p.seg); i >= 0 {
			d.dropFrom(i)
		}
		d.txid, d.pos = p.prevTXID, p.prevPos
		d.apply(evSnapshotFailed, p.reason)
		d.releaseSnapshotLocks(p)
		if errors.Is(err, errWALChanged) {
			return err
		}
		return fmt.Errorf("snapshot: %w", err)
	}
	d.releaseSnapshotLocks(p)
	p.seg.commit, p.seg.pages, p.seg.encoding = commit, int(commit), false
	if p.ev == evSnapshotNoWAL {
		d.stamp = p.stampNow
		if d.app == nil && d.pin.slot != 0 {
			d.stamp = fileStamp{} // pinned: no generation can be lost
		}
		// For a restart: the chain continues over this file, if unchanged.
		if err := writeRecord(d.recordDir(), closedRecord{After: p.seg.maxTXID, Stamp: p.stampNow}); err != nil {
			d.debug("record snapshot without a WAL", "error", err)
		}
	}
	d.snapAt, d.reason = time.Now(), ""
	d.lastActive = p.readAt
	d.logger().Info("snapshot", "reason", p.reason, "txid", p.seg.maxTXID.String(), "pages", commit, "bytes", size)
	return nil
}

// releaseSnapshotLocks releases what planSnapshot took and the state after
// the snapshot does not keep.
func (d *DB) releaseSnapshotLocks(p *snapPlan) {
	if p.ov != nil {
		p.ov.close()
		p.ov = nil
	}
	if p.ownFile && p.db != nil {
		p.db.Close()
		p.db = nil
	}
	if p.zero && d.st != stateHandedOver {
		d.pin.unlockZero()
		p.zero = false
	}
	if d.st == stateHandedOver && d.app == nil && d.pin.slot != 0 {
		d.pin.unlockSlot() // the hand-over: SQLite may restart the generation
	}
}

// frameEnd returns the position after frame n of wf's generation (its
// start if n is 0), taking the running checksum from frame n's header as
// SQLite's writer continues from it.
func frameEnd(wf *walFile, n uint32) (wal.Pos, error) {
	pos := wf.hdr.Start()
	if n == 0 {
		return pos, nil
	}
	var b [wal.FrameHeaderSize]byte
	off := wf.hdr.FrameOffset(int64(n))
	if _, err := wf.r.ReadAt(b[:], off); err != nil {
		return wal.Pos{}, fmt.Errorf("read wal frame %d: %w", n, err)
	}
	pos.Offset = off + wf.hdr.FrameSize()
	pos.Checksum1, pos.Checksum2 = binary.BigEndian.Uint32(b[16:]), binary.BigEndian.Uint32(b[20:])
	return pos, nil
}

// overlay holds the newest committed WAL copy of some pages, copied out of
// the WAL so that the WAL may be reset while the snapshot is encoded.
type overlay struct {
	pgnos  []uint32    // ascending
	data   *spool      // page i of pgnos at offset i*pageSize
	r      io.ReaderAt // reads data
	commit uint32      // database size in pages after the last commit (0: none)
}

// copyOverlay copies the pages scan found into a spool.
func copyOverlay(wf *walFile, scan *walScan, dir string) (*overlay, error) {
	ps := int64(wf.hdr.PageSize)
	sp, err := newSpoolFor(dir, int64(len(scan.pages))*ps)
	if err != nil {
		return nil, err
	}
	ov := &overlay{data: sp, pgnos: make([]uint32, 0, len(scan.pages))}
	if !scan.empty() {
		ov.commit = scan.commit
	}
	bp := pageBuf(wf.hdr.PageSize)
	defer pageBufs.Put(bp)
	for _, ref := range scan.pages {
		off := wf.hdr.FrameOffset(int64(ref.frame)) + wal.FrameHeaderSize
		if _, err := wf.r.ReadAt(*bp, off); err != nil {
			ov.close()
			return nil, fmt.Errorf("read wal page %d: %w", ref.pgno, err)
		}
		if _, err := sp.Write(*bp); err != nil {
			ov.close()
			return nil, err
		}
		ov.pgnos = append(ov.pgnos, ref.pgno)
	}
	if ov.r, err = sp.ReaderAt(); err != nil {
		ov.close()
		return nil, err
	}
	return ov, nil
}

func (o *overlay) close() {
	if o != nil && o.data != nil {
		o.data.Close()
		o.data = nil
	}
}

// snapshotKey returns the key of the snapshot covering TXIDs 1..txid.
func snapshotKey(name string, txid ltx.TXID) string { return ltxKey(name, SnapshotLevel, 1, txid) }

// Snapshot uploads a full snapshot of the database now, after uploading
// anything committed and not yet replicated. If that sync had to take a
// snapshot anyway (the first one of a database, or after a discontinuity),
// it is the one: no second copy is uploaded.
func (d *DB) Snapshot(ctx context.Context) error {
	if err := d.upMu.lock(ctx); err != nil {
		return err
	}
	defer d.upMu.unlock()
	d.tryNow = true
	before := d.r.stats.snapshots.Load()
	st := syncState{start: time.Now()}
	if err := d.syncLocked(ctx, &st); err != nil {
		return err
	}
	if st.snapped || d.r.stats.snapshots.Load() > before {
		return nil
	}
	if err := d.mu.lock(ctx); err != nil {
		return err
	}
	if d.reason == "" {
		d.reason = "requested"
	}
	d.mu.unlock()
	if err := d.snapshot(ctx); err != nil {
		return err
	}
	return d.uploadPending(ctx, true)
}
