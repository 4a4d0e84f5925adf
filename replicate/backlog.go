package replicate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/superfly/ltx"
)

// Degraded mode. When the target does not take a segment (it is
// unreachable, failing, or refuses the request), the sync does not stop:
// everything captured goes to the database's backlog, a file on local disk,
// so the WAL hand-over goes on and the application's WAL stays as bounded
// as without walsync. Uploads are retried with backoff, oldest first, and
// the backlog drains in TXID order when the target is back.
//
// The backlogs of all databases share one budget, Options.SpoolMax bytes.
// A segment that does not fit ends the database's degraded mode the hard
// way: its backlog and everything captured are dropped, the pin is
// released (the WAL is the application's alone), the chain is broken, and
// a snapshot re-establishes it once an upload attempt is due; this is
// logged at ERROR with the database and the reason, and counted in
// Stats.SpoolOverflows.
//
// The backlog file is unlinked (only its descriptor reaches it), so memory
// and descriptors stay flat however long the outage: O(1) per database.
// A process that stops or crashes with a backlog loses it; the next start
// then finds the WAL restarted past the target's position and takes a
// snapshot, so the restore points inside the outage are lost, not the data.

// backlog is one database's segments waiting for the target, in TXID
// order. Each record is a backlogHdrLen-byte header, then an encoded LTX
// file. Its owner holds DB.upMu.
type backlog struct {
	f          *os.File
	head, tail int64     // the next record to upload; the end of the last
	n          int       // records between head and tail
	fails      int       // consecutive upload attempts that failed
	retry      time.Time // no upload is attempted before it
	err        error     // why uploads fail; nil when the target takes them
}

// Record header fields (little endian): size of the LTX file, level,
// min and max TXID, the segment's timestamp and read time (Unix ns).
const backlogHdrLen = 48

type backlogRec struct {
	size             int64
	level            int
	minTXID, maxTXID ltx.TXID
	ts, readAt       time.Time
}

// offlineError is returned by a sync that kept everything it captured in
// the backlog because the target did not take it. The database is synced
// again at its usual pace; uploads are tried again at retry.
type offlineError struct {
	err   error
	retry time.Time
}

func (e *offlineError) Error() string {
	return fmt.Sprintf("target not reachable, changes spooled locally: %v", e.err)
}

func (e *offlineError) Unwrap() error { return e.err }

// errSpoolFull means the spool budget has no room for a segment.
var errSpoolFull = errors.New("spool budget exceeded")

// offline reports whether uploads are failing (b may be nil: they are
// not). The caller holds upMu.
func (b *backlog) offline() bool { return b != nil && b.err != nil }

// push appends seg's encoded data, charging it to the budget.
func (b *backlog) push(r *Replicator, seg *segment) error {
	size := seg.data.Size()
	if r.spoolUsed.Add(backlogHdrLen+size) > r.opts.SpoolMax {
		r.spoolUsed.Add(-(backlogHdrLen + size))
		return fmt.Errorf("%w (%d bytes, Options.SpoolMax)", errSpoolFull, r.opts.SpoolMax)
	}
	rd, err := seg.data.Reader()
	if err == nil && b.f == nil {
		b.f, err = createUnlinked(r.opts.SpoolDir, ".walsync-backlog-*")
	}
	if err == nil {
		err = b.write(seg, rd, size)
	}
	if err != nil {
		r.spoolUsed.Add(-(backlogHdrLen + size))
		return fmt.Errorf("spool %s: %w", seg.maxTXID, err)
	}
	b.tail += backlogHdrLen + size
	b.n++
	return nil
}

func (b *backlog) write(seg *segment, rd io.Reader, size int64) error {
	var h [backlogHdrLen]byte
	binary.LittleEndian.PutUint64(h[0:], uint64(size))
	binary.LittleEndian.PutUint64(h[8:], uint64(seg.level))
	binary.LittleEndian.PutUint64(h[16:], uint64(seg.minTXID))
	binary.LittleEndian.PutUint64(h[24:], uint64(seg.maxTXID))
	binary.LittleEndian.PutUint64(h[32:], uint64(seg.ts.UnixNano()))
	binary.LittleEndian.PutUint64(h[40:], uint64(seg.readAt.UnixNano()))
	if _, err := b.f.WriteAt(h[:], b.tail); err != nil {
		return err
	}
	n, err := io.Copy(io.NewOffsetWriter(b.f, b.tail+backlogHdrLen), rd)
	if err == nil && n != size {
		err = fmt.Errorf("short copy: %d of %d bytes", n, size)
	}
	return err
}

// peek returns the oldest record and a reader of its LTX file.
func (b *backlog) peek() (backlogRec, *io.SectionReader, error) {
	var h [backlogHdrLen]byte
	if _, err := b.f.ReadAt(h[:], b.head); err != nil {
		return backlogRec{}, nil, fmt.Errorf("read spool: %w", err)
	}
	rec := backlogRec{
		size:    int64(binary.LittleEndian.Uint64(h[0:])),
		level:   int(binary.LittleEndian.Uint64(h[8:])),
		minTXID: ltx.TXID(binary.LittleEndian.Uint64(h[16:])),
		maxTXID: ltx.TXID(binary.LittleEndian.Uint64(h[24:])),
		ts:      time.Unix(0, int64(binary.LittleEndian.Uint64(h[32:]))).UTC(),
		readAt:  time.Unix(0, int64(binary.LittleEndian.Uint64(h[40:]))),
	}
	if rec.size < 0 || b.head+backlogHdrLen+rec.size > b.tail {
		return backlogRec{}, nil, fmt.Errorf("read spool: record of %d bytes past the end", rec.size)
	}
	return rec, io.NewSectionReader(b.f, b.head+backlogHdrLen, rec.size), nil
}

// pop drops the oldest record, rec; an emptied backlog gives its disk
// space and budget back and closes its file.
func (b *backlog) pop(r *Replicator, rec backlogRec) {
	b.head += backlogHdrLen + rec.size
	b.n--
	if b.n == 0 {
		b.reset(r)
	}
}

// reset empties the backlog (its records are dropped); b may be nil.
func (b *backlog) reset(r *Replicator) {
	if b == nil {
		return
	}
	r.spoolUsed.Add(-b.tail)
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	b.head, b.tail, b.n = 0, 0, 0
}

// firstTXID returns the first TXID in the backlog, or 0.
func (b *backlog) firstTXID() ltx.TXID {
	if b.n == 0 {
		return 0
	}
	rec, _, err := b.peek()
	if err != nil {
		return 0
	}
	return rec.minTXID
}

// failed records a failed upload round and when to try again.
func (b *backlog) failed(err error) {
	b.fails++
	b.err = err
	b.retry = time.Now().Add(min(time.Second<<min(b.fails-1, 5), 30*time.Second))
}

// createUnlinked creates a file in dir that only its descriptor reaches.
func createUnlinked(dir, pattern string) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// defaultSpoolMax is a quarter of the free space of dir's file system (at
// least 64 MiB, so that a full disk still leaves a short outage covered).
func defaultSpoolMax(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 1 << 30
	}
	return max(int64(st.Bavail)*st.Bsize/4, 64<<20)
}

// uploadBacklog uploads the backlog, oldest first, and returns the number
// of objects uploaded. The caller holds upMu, not mu.
func (d *DB) uploadBacklog(ctx context.Context) (int, error) {
	n := 0
	for d.bl.n > 0 {
		rec, rd, err := d.bl.peek()
		if err != nil {
			return n, err
		}
		key := ltxKey(d.name, rec.level, rec.minTXID, rec.maxTXID)
		meta := map[string]string{MetaTimestamp: rec.ts.Format(time.RFC3339Nano)}
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if n == 0 {
			// The first upload probes a target that failed: bounded, so
			// that a target that swallows requests (a black hole: no
			// reset, no answer) holds the database's sync for a bounded
			// time per attempt, its own retries included.
			pctx, cancel = context.WithTimeout(ctx, probeTimeout(rec.size))
		}
		err = d.r.store.Put(pctx, key, rd, rec.size, meta)
		cancel()
		if err != nil {
			return n, fmt.Errorf("upload %s: %w", key, err)
		}
		n++
		if rec.level == SegmentLevel {
			// A reader of its own, as in put.
			d.r.comp.stageSegment(d, rec.minTXID, rec.maxTXID, io.NewSectionReader(rd, 0, rec.size), rec.size)
		}
		d.uploaded(rec.level, rec.maxTXID, rec.size, rec.readAt)
		d.bl.pop(d.r, rec)
		if err := d.mu.lock(context.WithoutCancel(ctx)); err != nil {
			return n, err
		}
		d.markDurable(rec.readAt)
		d.mu.unlock()
	}
	return n, nil
}

// probeTimeout bounds the first upload of size bytes to a target that
// failed: 15 s, plus a second per MiB.
func probeTimeout(size int64) time.Duration {
	return 15*time.Second + time.Duration(size>>20)*time.Second
}

// wentOffline handles a failed upload: everything captured goes to the
// backlog and the sync goes on without the target. The caller holds upMu,
// not mu.
func (d *DB) wentOffline(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err // stopping: what is captured stays pending
	}
	first := !d.bl.offline()
	if d.bl == nil {
		d.bl = &backlog{}
	}
	d.bl.failed(err)
	d.tryNow = false // one attempt per sync
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrInvalidKey) {
		return d.refused(ctx, err)
	}
	d.r.stats.errors.Add(1)
	d.r.metrics.unreachable.Add(1)
	if first || d.bl.fails%10 == 0 {
		d.logger().Warn("target not reachable; spooling changes locally", "error", err,
			"retry_in", time.Until(d.bl.retry).Round(time.Millisecond), "failures", d.bl.fails, "spooled_bytes", d.bl.tail-d.bl.head)
	}
	return d.spoolPending(ctx)
}

// spoolPending moves every captured segment to the backlog and reports
// the outage. The caller holds upMu, not mu.
func (d *DB) spoolPending(ctx context.Context) error {
	for {
		if err := d.mu.lock(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		if len(d.pending) == 0 {
			d.mu.unlock()
			return &offlineError{err: d.bl.err, retry: d.bl.retry}
		}
		seg := d.pending[0]
		d.mu.unlock()

		err := d.encode(seg)
		if err == nil {
			err = d.bl.push(d.r, seg)
		}

		if lerr := d.mu.lock(context.WithoutCancel(ctx)); lerr != nil {
			return lerr
		}
		if errors.Is(err, errRawInvalid) {
			// As in uploadPending: the chain ends before seg.
			d.dropFrom(0)
			d.txid = seg.minTXID - 1
			d.discontinuity(fmt.Sprintf("%s (%v)", whyChain, err))
		} else if err != nil {
			d.overflow(err)
		}
		if err != nil {
			d.mu.unlock()
			return &offlineError{err: d.bl.err, retry: d.bl.retry}
		}
		if seg.file != "" {
			os.Remove(seg.file) // in the backlog now
		}
		seg.close()
		d.pending[0] = nil
		d.pending = d.pending[1:]
		d.r.stats.spooled.Add(1)
		d.mu.unlock()
	}
}

// overflow gives up on the chain when a segment cannot be spooled: the
// backlog and everything captured are dropped, the WAL is released, and a
// snapshot takes the first TXID not in the target once an upload is due.
// The caller holds upMu and mu.
func (d *DB) overflow(err error) {
	d.r.stats.spoolOverflows.Add(1)
	d.logger().Error("cannot keep the changes the target did not take; the WAL is released and a snapshot will restart the chain once the target takes uploads again",
		"reason", err, "target_error", d.bl.err)
	d.dropUnuploaded(fmt.Sprintf("%s (%v)", whySpoolOverflow, err))
}

// dropUnuploaded drops the backlog and everything captured, releases the
// WAL, and breaks the chain so that a snapshot takes the first TXID the
// target lacks. The caller holds upMu and mu.
func (d *DB) dropUnuploaded(reason string) {
	txid := d.bl.firstTXID()
	if txid == 0 && len(d.pending) > 0 {
		txid = d.pending[0].minTXID
		if d.pending[0].level == SnapshotLevel {
			txid = d.pending[0].maxTXID // a snapshot starts at 1 but takes maxTXID
		}
	}
	d.bl.reset(d.r)
	d.dropFrom(0)
	if txid != 0 {
		d.txid = txid - 1
	}
	d.discontinuity(reason)
	d.releasePin()
}

// refused gives up on what is captured when the target refuses it for
// good: keeping it would only fill the spool. As for an overflow, the WAL
// is released and a snapshot restarts the chain once a probe finds the
// target taking requests; attempts back off to 10 minutes. The caller
// holds upMu, not mu.
func (d *DB) refused(ctx context.Context, err error) error {
	d.bl.retry = time.Now().Add(min(time.Minute<<min(d.bl.fails-1, 4), 10*time.Minute))
	if lerr := d.mu.lock(context.WithoutCancel(ctx)); lerr != nil {
		return lerr
	}
	defer d.mu.unlock()
	d.r.stats.refusals.Add(1)
	d.logger().Error("the target refuses this database's uploads; the WAL is released and a snapshot will restart the chain once the target takes uploads again",
		"error", err, "retry_in", time.Until(d.bl.retry).Round(time.Second))
	d.dropUnuploaded(fmt.Sprintf("%s (%v)", whyRefused, err))
	return &offlineError{err: err, retry: d.bl.retry}
}

// waitingForTarget reports whether a broken chain waits for the target
// before its snapshot is taken: after a spool overflow, a snapshot would
// only fill the spool again. The probe at the start of a sync (see
// uploadPending) ends the wait.
func (d *DB) waitingForTarget() bool {
	return d.bl.offline() && d.bl.n == 0
}

// probe asks the target for an object (a snapshot key that need not
// exist), bounded like the first upload to a failing target.
func (d *DB) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout(0))
	defer cancel()
	_, err := d.r.store.Head(pctx, snapshotKey(d.name, d.txid+1))
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

// pendingLen returns the number of captured segments not uploaded.
func (d *DB) pendingLen(ctx context.Context) int {
	if err := d.mu.lock(context.WithoutCancel(ctx)); err != nil {
		return 0
	}
	defer d.mu.unlock()
	return len(d.pending)
}

// backOnline records that the target took an upload again, with the
// backlog uploaded.
func (d *DB) backOnline() {
	if d.bl.offline() {
		d.logger().Info("target reachable again; spooled changes uploaded", "after_failures", d.bl.fails)
	}
	d.dropBacklog()
}

// dropBacklog forgets the backlog and the outage.
func (d *DB) dropBacklog() {
	d.bl.reset(d.r)
	d.bl = nil
}
