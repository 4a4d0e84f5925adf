package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/walsync/walsync/internal/wal"

	"github.com/superfly/ltx"
)

// DB is one database replicated by a [Replicator]. While idle it holds only
// this struct and the two locked descriptors of its pin.
type DB struct {
	r       *Replicator
	path    string
	name    string
	walPath string
	shmPath string

	sched schedState // guarded by scheduler.mu

	urgentMark atomic.Int64 // WAL end at the last urgent sync request (NotifyWAL)

	// upMu serialises syncs, so segments are uploaded in TXID order; mu
	// guards the state below and is never held during network I/O, so
	// the VFS's WAL-reset gate (which takes it) never waits for S3.
	upMu       chanMutex
	mu         chanMutex
	opened     bool // files open (and pinned)
	resumed    bool // position read from the target
	pin        pin
	ino        uint64
	pos        wal.Pos    // next frame to replicate in the current generation
	newGenOK   bool       // the next WAL generation seen continues the chain
	txid       ltx.TXID   // last TXID in the target
	lastTS     int64      // timestamp (ms) of the last file uploaded
	snapAt     time.Time  // time of the last snapshot
	snapReason string     // non-empty: a snapshot is needed, and why
	pending    []*segment // captured, not yet uploaded, in TXID order
	app        *appState  // set for databases captured by an in-process VFS

	durableAt time.Time     // everything committed before it is in the target
	durableCh chan struct{} // closed and replaced when durableAt moves

	// A watched database is unpinned (no descriptor held) while no
	// application has its WAL-index open, or when the descriptor budget
	// (Options.MaxPinned) went to busier databases. stamp is the database
	// file as it was when walsync last knew it held nothing more than the
	// target, for databases with no replicated WAL generation (newGenOK).
	stamp      fileStamp
	lastActive time.Time // last sync that captured something
}

func newDB(r *Replicator, path, name string) *DB {
	return &DB{r: r, path: path, name: name, walPath: path + "-wal", shmPath: path + "-shm",
		upMu: newChanMutex(), mu: newChanMutex()}
}

// Path returns the database's absolute path.
func (d *DB) Path() string { return d.path }

// Name returns the database's name in the target.
func (d *DB) Name() string { return d.name }

// TXID returns the last TXID uploaded for the database.
func (d *DB) TXID() ltx.TXID {
	if err := d.mu.lock(context.Background()); err != nil {
		return 0
	}
	defer d.mu.unlock()
	return d.txid
}

func (d *DB) logger() *slog.Logger { return d.r.log.With("db", d.name) }

// open checks the database, pins its WAL and finds where replication
// resumes. It is called once, by Add, and again after the file was replaced.
func (d *DB) open(ctx context.Context) error {
	if err := d.openLocal(ctx); err != nil {
		return err
	}
	if d.app != nil {
		return nil // resumed by the first sync, off the application's goroutine
	}
	if err := d.resume(ctx); err != nil {
		d.close()
		return err
	}
	return nil
}

// openLocal opens (and pins) the database's files if they are not open.
func (d *DB) openLocal(ctx context.Context) error {
	if err := d.mu.lock(ctx); err != nil {
		return err
	}
	defer d.mu.unlock()
	if d.opened {
		return nil
	}
	return d.openLocked(ctx)
}

func (d *DB) openLocked(ctx context.Context) error {
	fi, err := os.Stat(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("database %s does not exist", d.path)
	} else if err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", d.path)
	}
	if d.app != nil {
		err = d.pin.openDB(d.path)
	} else {
		err = retryBusy(ctx, func() error { return d.pin.lockDB(d.path) })
	}
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	dh, err := readDBHeader(d.dbReader())
	if err == nil && !dh.wal {
		err = ErrNotWAL
	}
	if err != nil {
		d.pin.close()
		return err
	}
	if fi, err := d.pin.db.Stat(); err == nil {
		d.ino = inode(fi)
	}
	switch {
	case d.app != nil:
		d.pin.openSHM(d.shmPath)
	default:
		if err := d.pinWAL(ctx, false); err != nil {
			d.pin.close()
			return err
		}
	}
	d.opened = true
	return nil
}

// pinWAL joins the WAL-index and takes a read-mark slot; if no connection
// has the WAL-index open, a short-lived SQLite connection opens it first.
// Unless force is set, a spent pin budget (Options.MaxPinned) releases the
// descriptors instead: the next write (reported by inotify) pins it.
func (d *DB) pinWAL(ctx context.Context, force bool) error {
	if !force && d.r.pinned.Load() >= int64(d.r.opts.MaxPinned) {
		d.pin.close()
		return nil
	}
	err := d.pin.lockSHM(d.shmPath)
	if errors.Is(err, errNoSharedMemory) {
		err = withReadTxn(ctx, d.path, func() error { return d.pin.lockSHM(d.shmPath) })
	}
	if err != nil {
		return fmt.Errorf("pin wal: %w", err)
	}
	if err := retryBusy(ctx, d.pin.lockSlot); err != nil {
		return fmt.Errorf("pin wal: %w", err)
	}
	d.r.notePinned()
	return nil
}

// repinIfNeeded pins an unpinned watched database once an application has
// its WAL-index open. If walsync had no replicated generation to protect
// and the database file changed meanwhile, a checkpoint copied frames that
// walsync never saw: that is a discontinuity.
func (d *DB) repinIfNeeded(ctx context.Context) error {
	if d.app != nil || d.pin.held() {
		return nil
	}
	if err := retryBusy(ctx, func() error { return d.pin.lockDB(d.path) }); err != nil {
		if errors.Is(err, errLockBusy) {
			return nil // closing connection holds EXCLUSIVE; next time
		}
		return err
	}
	// A write woke it: pin it even over budget; the budget then unpins the
	// least recently written database instead. A sync that finds nothing
	// written (start-up, a Sync of every database) stays within the budget,
	// or a flush of thousands of idle databases would pin them all at once.
	if err := d.pinWAL(ctx, d.walMoved()); err != nil {
		d.pin.close()
		return err
	}
	if d.pin.held() {
		d.checkStamp("database changed before walsync could pin its WAL")
	}
	return nil
}

// walMoved reports whether the WAL file's size differs from the replicated
// position: something was written (or the WAL truncated) since the last
// capture.
func (d *DB) walMoved() bool {
	fi, err := os.Stat(d.walPath)
	return err == nil && fi.Size() != d.pos.Offset
}

// checkStamp compares the database file with the recorded stamp, if any.
func (d *DB) checkStamp(reason string) {
	if d.stamp == (fileStamp{}) || !d.newGenOK {
		return
	}
	if st, err := stampOf(d.path); err != nil || st != d.stamp {
		d.discontinuity(reason)
	}
	d.stamp = fileStamp{}
}

// unpin releases the descriptors of a watched database, recording the
// database file's stamp if walsync has no WAL generation to follow.
func (d *DB) unpin() {
	if !d.pin.held() || d.app != nil {
		return
	}
	if d.newGenOK {
		if d.pin.slot == 0 {
			// After a hand-over (READ_LOCK(0) held): the generation may still
			// be restarted by the next writer, which nothing proves later.
			d.newGenOK = false
		}
		d.stamp, _ = stampOf(d.path)
	}
	d.releasePin()
}

// releasePin closes the pin's descriptors.
func (d *DB) releasePin() {
	if d.pin.shm != nil && d.app == nil {
		d.r.pinned.Add(-1)
	}
	d.pin.close()
}

// close releases the pin.
func (d *DB) close() error {
	if err := d.upMu.lock(context.Background()); err != nil {
		return err
	}
	defer d.upMu.unlock()
	if err := d.mu.lock(context.Background()); err != nil {
		return err
	}
	defer d.mu.unlock()
	d.dropPending()
	d.opened = false
	held := d.pin.shm != nil && d.app == nil
	err := d.pin.close()
	if held {
		d.r.pinned.Add(-1)
	}
	return err
}

// sync uploads everything committed to the database since the last sync:
// segments captured earlier, then new WAL transactions, a snapshot when one
// is needed, and finally a checkpoint when the WAL has grown long. Local
// work happens under d.mu in step; uploads happen between steps without it.
func (d *DB) sync(ctx context.Context) error {
	if err := d.upMu.lock(ctx); err != nil {
		return err
	}
	defer d.upMu.unlock()
	st := syncState{start: time.Now()}
	for {
		if err := d.uploadPending(ctx); err != nil {
			return err
		}
		if err := d.openLocal(ctx); err != nil {
			return err
		}
		if err := d.resume(ctx); err != nil {
			return err
		}
		more, err := d.step(ctx, &st)
		if err != nil {
			return err
		}
		if !more {
			return d.uploadPending(ctx)
		}
	}
}

// syncState is what one sync of a database has done so far.
type syncState struct {
	start    time.Time // when the sync started
	captured bool      // it captured everything committed before some point
}

// step does the next piece of local work and reports whether it captured
// something (the caller uploads it and calls step again): open the
// database, take a snapshot if needed, capture one segment, take a scheduled
// snapshot (at most one per sync), or, once everything is uploaded,
// checkpoint.
//
// A sync captures the WAL once (more often only when MaxSegmentBytes cut a
// capture short): transactions committed while its segment was uploading
// woke the inotify watch and go into the next sync, one sync interval
// later, so a busy database costs one segment per interval, not one per
// upload round trip.
func (d *DB) step(ctx context.Context, st *syncState) (more bool, err error) {
	if err := d.mu.lock(ctx); err != nil {
		return false, err
	}
	defer d.mu.unlock()
	if !d.opened || !d.resumed {
		return true, nil // closed meanwhile: the caller opens it again
	}
	if err := d.checkReplaced(ctx); err != nil {
		return false, err
	}
	if err := d.repinIfNeeded(ctx); err != nil {
		return false, err
	}
	// Re-arm the one-shot inotify watch before reading the WAL: a write
	// after this point wakes the next sync.
	if err := d.r.watch.armWAL(d); err != nil {
		return false, err
	}
	if d.snapReason != "" {
		return true, d.snapshot(ctx, d.snapReason)
	}
	if !st.captured {
		attempt := time.Now()
		captured, whole, err := d.capture(attempt)
		if err != nil {
			return false, err
		}
		if captured {
			st.captured = whole
			return true, nil
		}
		if d.snapReason == "" && len(d.pending) == 0 {
			d.markDurable(attempt) // nothing new: all committed before attempt is uploaded
		}
	}
	if d.snapReason != "" { // capture found a discontinuity
		return true, d.snapshot(ctx, d.snapReason)
	}
	if time.Since(d.snapAt) >= d.r.opts.SnapshotInterval && d.snapAt.Before(st.start) {
		return true, d.snapshot(ctx, "scheduled")
	}
	return false, d.maybeCheckpoint(ctx)
}

// checkReplaced notices a database file replaced by rename or deleted and
// re-opened, and answers with a fresh pin and a snapshot.
func (d *DB) checkReplaced(ctx context.Context) error {
	fi, err := os.Stat(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", errDBDeleted, d.path)
	} else if err != nil {
		return err
	}
	if inode(fi) == d.ino {
		return nil
	}
	d.logger().Warn("database file replaced, taking a snapshot", "path", d.path)
	d.releasePin()
	d.opened = false
	if err := d.openLocked(ctx); err != nil {
		return err
	}
	if d.snapReason == "" {
		d.snapReason = "database file replaced"
	}
	return nil
}

// errDBDeleted stops the replication of a database whose file is gone.
var errDBDeleted = errors.New("database file deleted")

// discontinuity records that the chain cannot continue incrementally.
func (d *DB) discontinuity(reason string) {
	d.logger().Warn("replication discontinuity, taking a snapshot", "reason", reason)
	d.snapReason = reason
}

// capture reads the WAL transactions committed after the replicated
// position (at most MaxSegmentBytes of them) into one pending segment. It
// reports whether it captured anything and, if so, whether that is every
// transaction committed before readAt (false: MaxSegmentBytes cut it short).
func (d *DB) capture(readAt time.Time) (captured, whole bool, err error) {
	wf, err := d.openWAL()
	if err != nil {
		return false, false, err
	}
	if wf == nil {
		if !d.newGenOK && (d.app == nil || !d.app.closed) {
			d.discontinuity("WAL deleted, truncated or rewritten by another process")
		}
		return false, false, nil
	}
	defer wf.f.Close()
	hdr := wf.hdr
	switch {
	case d.pos.SameGen(hdr):
	case d.newGenOK:
		if !d.pin.held() && d.app == nil {
			d.checkStamp("database changed while walsync did not pin its WAL")
			if d.snapReason != "" {
				return false, false, nil
			}
		}
		d.pos, d.newGenOK = hdr.Start(), false
		if err := d.repin(); err != nil {
			return false, false, err
		}
	case d.app != nil && d.app.nextIs(hdr):
		d.pos, d.app.next, d.app.closed = hdr.Start(), nil, false
	default:
		d.discontinuity(fmt.Sprintf("WAL restarted by another process (salt %08x-%08x, expected %08x-%08x)",
			hdr.Salt1, hdr.Salt2, d.pos.Salt1, d.pos.Salt2))
		return false, false, nil
	}
	if wf.size < d.pos.Offset {
		d.discontinuity("WAL truncated below the replicated position")
		return false, false, nil
	}
	scan, err := scanWAL(wf.r, hdr, d.pos, d.r.opts.MaxSegmentBytes, d.maxFrame(hdr))
	if err != nil {
		return false, false, err
	}
	if scan.empty() {
		return false, false, nil
	}
	seg, err := d.newSegment(scan)
	if err != nil {
		return false, false, err
	}
	if !wf.holds(scan) {
		// Restarted or truncated while the pages were read (possible
		// between an in-app gate and the reset it guards): read again.
		seg.close()
		d.r.sched.notify(d)
		return false, false, nil
	}
	// Captured: the segment is retried byte for byte until it is durable,
	// so a PUT that timed out but was stored is recognised, not rewritten.
	if !scan.full {
		seg.readAt = readAt // else not every commit before readAt is in it
	}
	d.lastActive = readAt
	d.pending = append(d.pending, seg)
	d.txid, d.pos, d.lastTS = seg.maxTXID, scan.end, seg.ts.UnixMilli()
	return true, !scan.full, nil
}

// maxFrame returns the WAL-index's last commit frame if it describes the
// generation hdr, else 0 (no limit: the checksum chain alone decides).
func (d *DB) maxFrame(hdr wal.Header) uint32 {
	if st, ok := d.pin.state(); ok && st.salt1 == hdr.Salt1 && st.salt2 == hdr.Salt2 && st.mxFrame > 0 {
		return st.mxFrame
	}
	return 0
}

// repin returns from the post-checkpoint READ_LOCK(0) to a read-mark slot
// once the WAL generation that was checkpointed has been restarted.
func (d *DB) repin() error {
	if d.pin.slot != 0 || d.app != nil || !d.pin.held() {
		return nil
	}
	if err := d.pin.lockSlot(); err != nil {
		if errors.Is(err, errLockBusy) {
			return nil // READ_LOCK(0) still pins; try again next time
		}
		return err
	}
	return d.pin.unlockZero()
}

// newSegment encodes scan into a spooled segment with the next TXID.
func (d *DB) newSegment(scan *walScan) (*segment, error) {
	txid := d.txid + 1
	ts := d.nextTimestamp()
	sp, err := newSpoolFor(d.r.opts.SpoolDir, int64(len(scan.pages))*int64(scan.hdr.PageSize))
	if err != nil {
		return nil, fmt.Errorf("encode segment %s: %w", txid, err)
	}
	if err := encodeSegment(sp, scan, txid, ts, d.storePage); err != nil {
		sp.Close()
		return nil, fmt.Errorf("encode segment %s: %w", txid, err)
	}
	return &segment{
		level: SegmentLevel, minTXID: txid, maxTXID: txid, ts: ts, data: sp,
		commit: scan.commit, pages: len(scan.pages),
	}, nil
}

// nextTimestamp returns the current time, never earlier than the timestamp
// of the previous file so that timestamps grow with TXIDs.
func (d *DB) nextTimestamp() time.Time {
	now := time.Now().UTC()
	if ms := now.UnixMilli(); ms < d.lastTS {
		return time.UnixMilli(d.lastTS).UTC()
	}
	return now
}

// uploadPending uploads the captured segments in TXID order. The caller
// holds d.upMu but not d.mu: the network I/O happens without d.mu, so the
// gate can append segments meanwhile.
func (d *DB) uploadPending(ctx context.Context) error {
	for {
		if err := d.mu.lock(ctx); err != nil {
			return err
		}
		if len(d.pending) == 0 {
			d.pending = nil
			d.mu.unlock()
			return nil
		}
		seg := d.pending[0]
		d.mu.unlock()

		err := d.put(ctx, seg)

		if lerr := d.mu.lock(context.WithoutCancel(ctx)); lerr != nil {
			return lerr
		}
		if err != nil {
			if errors.Is(err, ErrExists) {
				d.logger().Error("another writer uses this database's name in the target; re-reading it", "error", err)
				d.dropPending()
				d.opened, d.resumed = false, false
				d.releasePin()
			}
			d.mu.unlock()
			return err
		}
		if seg.file != "" {
			os.Remove(seg.file) // uploaded: the spooled copy is not needed
		}
		d.markDurable(seg.readAt)
		seg.close()
		d.pending[0] = nil
		d.pending = d.pending[1:]
		d.mu.unlock()
	}
}

// markDurable records that every transaction committed before t is in
// the target. The caller holds d.mu.
func (d *DB) markDurable(t time.Time) {
	if t.IsZero() || !t.After(d.durableAt) {
		return
	}
	d.durableAt = t
	if d.durableCh != nil {
		close(d.durableCh)
		d.durableCh = nil
	}
}

// WaitDurable waits until every transaction committed to the database
// before t is durable in the target, without hastening the upload (see
// [Replicator.Sync] for that). It measures what an application actually
// waits for at a given sync interval.
func (d *DB) WaitDurable(ctx context.Context, t time.Time) error {
	for {
		if err := d.mu.lock(ctx); err != nil {
			return err
		}
		if !d.durableAt.Before(t) {
			d.mu.unlock()
			return nil
		}
		if d.durableCh == nil {
			d.durableCh = make(chan struct{})
		}
		ch := d.durableCh
		d.mu.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// put stores one segment.
func (d *DB) put(ctx context.Context, seg *segment) error {
	rd, err := seg.data.Reader()
	if err != nil {
		return err
	}
	key := ltxKey(d.name, seg.level, seg.minTXID, seg.maxTXID)
	meta := map[string]string{MetaTimestamp: seg.ts.Format(time.RFC3339Nano)}
	if err := d.r.store.Put(ctx, key, rd, seg.data.Size(), meta); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	if seg.level == SnapshotLevel {
		d.r.stats.snapshots.Add(1)
	} else {
		d.r.stats.segments.Add(1)
	}
	d.r.stats.bytes.Add(seg.data.Size())
	return nil
}

// dropPending discards captured segments that can no longer be uploaded.
func (d *DB) dropPending() {
	for _, s := range d.pending {
		s.close()
	}
	d.pending = nil
}

// retryBusy calls fn until it returns something other than errLockBusy,
// for about a second, then gives up with errLockBusy.
func retryBusy(ctx context.Context, fn func() error) error {
	delay := time.Millisecond
	for i := 0; ; i++ {
		err := fn()
		if !errors.Is(err, errLockBusy) || i == 10 {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// chanMutex is a mutex whose Lock can be abandoned when a context ends.
type chanMutex chan struct{}

func newChanMutex() chanMutex { return make(chanMutex, 1) }

func (m chanMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m chanMutex) unlock() { <-m }

// tryLock takes the mutex if it is free.
func (m chanMutex) tryLock() bool {
	select {
	case m <- struct{}{}:
		return true
	default:
		return false
	}
}

// lastActiveAt returns when the database last had something captured. The
// read is racy by design (an ordering hint for the pin budget), so it is
// taken without d.mu only through this accessor.
func (d *DB) lastActiveAt() time.Time {
	if !d.mu.tryLock() {
		return time.Now() // busy: most recently active
	}
	defer d.mu.unlock()
	return d.lastActive
}

// walFile is an open WAL with a valid header.
type walFile struct {
	f    *os.File
	r    io.ReaderAt // the plaintext: f, or f decoded by an in-app codec
	hdr  wal.Header
	size int64
}

// holds reports whether the WAL still holds the generation and frames scan
// read: its header is unchanged (a restart rewrites it first) and it is not
// shorter. Pages are read twice, during the scan (checksummed) and while
// encoding (not), so an encoder checks this after reading them.
func (w *walFile) holds(scan *walScan) bool {
	var b [wal.HeaderSize]byte
	if _, err := w.r.ReadAt(b[:], 0); err != nil {
		return false
	}
	hdr, err := wal.ParseHeader(b[:])
	if err != nil || hdr != scan.hdr {
		return false
	}
	fi, err := w.f.Stat()
	return err == nil && fi.Size() >= scan.end.Offset
}

// openWAL opens the database's WAL (see openWAL), decoded by the in-app
// codec if there is one.
func (d *DB) openWAL() (*walFile, error) {
	if d.app != nil && d.app.codec != nil {
		return openWALWith(d.walPath, d.app.codec.Reader)
	}
	return openWAL(d.walPath)
}

// openWAL opens the WAL at path. It returns nil, nil if there is no WAL or
// its header is not valid (not yet written, or being rewritten).
func openWAL(path string) (*walFile, error) {
	return openWALWith(path, nil)
}

// openWALWith is openWAL reading through decode (nil: the file as is).
func openWALWith(path string, decode func(io.ReaderAt) io.ReaderAt) (*walFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var r io.ReaderAt = f
	if decode != nil {
		r = decode(f)
	}
	rd, err := wal.NewReader(r)
	if errors.Is(err, wal.ErrHeader) {
		f.Close()
		return nil, nil
	} else if err != nil {
		f.Close()
		return nil, err
	}
	return &walFile{f: f, r: r, hdr: rd.Header(), size: fi.Size()}, nil
}
