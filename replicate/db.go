package replicate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/wal"
)

// DB is one database replicated by a [Replicator]. While idle it holds only
// this struct and, on the watch path, the locked descriptors of its pin.
type DB struct {
	r       *Replicator
	path    string
	name    string
	walPath string
	shmPath string

	sched schedState // guarded by scheduler.mu

	urgentMark atomic.Int64 // WAL end at the last urgent sync request (in-app commits)

	// upMu serialises syncs, so segments are uploaded in TXID order; mu
	// guards the state below and is never held during network I/O or a
	// whole-database read, so the VFS's WAL-reset gate (which takes it on
	// the application's goroutine) never waits for S3 or a snapshot.
	upMu chanMutex
	mu   chanMutex

	st         state      // where the database is in the state machine (state.go)
	reason     string     // stateBroken: why a snapshot is needed
	pin        pin        // locks and descriptors
	ino        uint64     // inode of the file replicated
	pos        wal.Pos    // end of what is captured of the WAL generation pos names
	stamp      fileStamp  // stateClosed: the database file when its WAL closed
	txid       ltx.TXID   // last TXID in the target or captured
	lastTS     int64      // timestamp (ms) of the last file captured
	snapAt     time.Time  // time of the last snapshot
	pending    []*segment // captured, not yet uploaded, in TXID order
	bl         *backlog   // what the target did not take (degraded mode; guarded by upMu)
	app        *appState  // set for databases captured by an in-process VFS
	torn       int        // consecutive looks that found the WAL header invalid
	recheck    int        // consecutive syncs that found a commit beyond the WAL-index
	short      int        // consecutive syncs that found the chain short of the WAL-index
	unsure     bool       // a capture was abandoned: not everything read is captured
	tryNow     bool       // a caller waits for this sync: try a failing target at once (upMu)
	leaseLater bool       // Add could not take the lease: resume takes it (upMu)

	durableAt time.Time     // everything committed before it is in the target
	durableCh chan struct{} // closed and replaced when durableAt moves

	lastActive time.Time // last sync that captured something
	viaDir     bool      // added by a WatchDir root (set before it is shared)
	opts       DBOptions // overrides of the Replicator's options (set before it is shared)

	stat dbStatus // for Replicator.Status and the metrics (status.go)
}

func newDB(r *Replicator, path, name string) *DB {
	return &DB{r: r, path: path, name: name, walPath: path + "-wal", shmPath: path + "-shm",
		upMu: newChanMutex(), mu: newChanMutex(), stat: dbStatus{added: time.Now().UnixNano()}}
}

// Path returns the database's absolute path.
func (d *DB) Path() string { return d.path }

// Name returns the database's name in the target.
func (d *DB) Name() string { return d.name }

// TXID returns the last TXID captured for the database.
func (d *DB) TXID() ltx.TXID {
	if err := d.mu.lock(context.Background()); err != nil {
		return 0
	}
	defer d.mu.unlock()
	return d.txid
}

func (d *DB) logger() *slog.Logger { return d.r.log.With("db", d.name) }

// debug logs at debug level, allocating nothing when that level is off
// (it is on hot paths: every capture, every transition).
func (d *DB) debug(msg string, args ...any) {
	if d.r.log.Enabled(context.Background(), slog.LevelDebug) {
		d.logger().Debug(msg, args...)
	}
}

// apply takes the transition of the state machine for ev and returns it for
// the caller to carry out its action. detail, if not empty, replaces the
// reason of a transition to Broken. The caller holds d.mu.
func (d *DB) apply(ev event, detail string) step {
	s := transition(d.st, ev)
	if s.next == stateBroken && d.st != stateBroken {
		d.reason = s.reason
		if detail != "" {
			d.reason = detail
		}
		if d.reason == whyFirst {
			d.logger().Info("no backup in the target yet, taking the first snapshot")
		} else {
			d.logger().Warn("replication discontinuity, taking a snapshot", "reason", d.reason, "state", d.st.String(), "event", ev.String())
		}
	}
	d.noteTransition(ev, s.next)
	if s.next != d.st {
		d.debug("state", "from", d.st.String(), "to", s.next.String(), "event", ev.String())
	}
	d.st = s.next
	if s.act == actRelease {
		d.releasePin()
	}
	return s
}

// discontinuity moves the database to Broken with reason, from any live
// state. The caller holds d.mu.
func (d *DB) discontinuity(reason string) { d.apply(evUnproven, reason) }

// openLocal opens the database's files for Add: local work only, no
// network I/O (the first sync reads the target).
func (d *DB) openLocal(ctx context.Context) error {
	if err := d.mu.lock(ctx); err != nil {
		return err
	}
	defer d.mu.unlock()
	return d.openLocked(ctx)
}

// isGone reports whether the database's file is deleted.
func (d *DB) isGone() bool {
	if !d.mu.tryLock() {
		return false
	}
	defer d.mu.unlock()
	return d.st == stateGone
}

// openLocked opens (and on the watch path pins, within the pin budget) the
// database's files. The caller holds d.mu.
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
		if err := d.pin.openDB(d.path); err != nil {
			return fmt.Errorf("open database: %w", err)
		}
		if err := d.checkHeader(d.pin.db); err != nil {
			d.releasePin()
			return err
		}
		d.pin.openSHM(d.shmPath)
		return nil
	}
	if d.budgetSpent() {
		// Watched unpinned: the next write (reported by inotify) pins it.
		f, err := os.Open(d.path)
		if err != nil {
			return fmt.Errorf("open database: %w", err)
		}
		defer f.Close()
		return d.checkHeader(f)
	}
	if err := d.pinDB(ctx); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	if err := d.checkHeader(d.pin.db); err != nil {
		d.releasePin()
		return err
	}
	if err := d.pinWAL(ctx); err != nil {
		d.releasePin()
		return err
	}
	return nil
}

// checkHeader checks that f is a WAL-mode database and records its inode.
func (d *DB) checkHeader(f *os.File) error {
	dh, err := readDBHeader(d.dbReader(f))
	if err == nil && !dh.wal {
		err = ErrNotWAL
	}
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err == nil {
		d.ino = inode(fi)
	}
	return nil
}

// budgetSpent reports whether the pin budget (Options.MaxPinned) has no
// room for one more database.
func (d *DB) budgetSpent() bool { return d.r.pinned.Load() >= int64(d.r.opts.MaxPinned) }

// pinDB opens the database and takes the SHARED-range read lock (watch
// path), counting it against the pin budget.
func (d *DB) pinDB(ctx context.Context) error {
	if d.pin.db != nil {
		return nil
	}
	if err := retryBusy(ctx, func() error { return d.pin.lockDB(d.path) }); err != nil {
		return err
	}
	d.r.notePinned()
	return nil
}

// pinWAL joins the WAL-index and takes a read-mark slot; if no connection
// has the WAL-index open, a short-lived SQLite connection opens it first.
func (d *DB) pinWAL(ctx context.Context) error {
	if d.pin.shm != nil {
		return nil
	}
	err := d.pin.lockSHM(d.shmPath)
	if errors.Is(err, errNoSharedMemory) {
		unregister := setGate(d.walPath, d.ino, nil) // the file pinned, not one put in its place
		err = withReadTxn(ctx, d.path, func() error { return d.pin.lockSHM(d.shmPath) })
		unregister()
	}
	if err != nil {
		return fmt.Errorf("pin wal: %w", err)
	}
	if err := retryBusy(ctx, d.pin.lockSlot); err != nil {
		d.pin.closeSHM()
		return fmt.Errorf("pin wal: %w", err)
	}
	return nil
}

// repinIfNeeded pins a watched database that was unpinned (pin budget)
// once its WAL is written again.
func (d *DB) repinIfNeeded(ctx context.Context) error {
	if d.app != nil || (d.pin.db != nil && d.pin.shm != nil) {
		return nil
	}
	if d.st == stateGone || d.st == stateNew {
		return nil
	}
	// A write woke it: pin it even over budget; the budget then unpins the
	// least recently written database instead. A sync that finds nothing
	// written (start-up, a Sync of every database) stays within the budget,
	// or a flush of thousands of idle databases would pin them all at once.
	if d.pin.db == nil && !d.walMoved() && d.budgetSpent() {
		return nil
	}
	if err := d.pinDB(ctx); err != nil {
		if errors.Is(err, errLockBusy) {
			return nil // a closing connection holds EXCLUSIVE; next time
		}
		return err
	}
	return d.pinWAL(ctx)
}

// walMoved reports whether the WAL file's size differs from the replicated
// position: something was written (or the WAL truncated) since the last
// capture.
func (d *DB) walMoved() bool {
	fi, err := os.Stat(d.walPath)
	return err == nil && fi.Size() != d.pos.Offset
}

// releasePin closes the pin's descriptors.
func (d *DB) releasePin() {
	if d.pin.db != nil && d.app == nil {
		d.r.pinned.Add(-1)
	}
	d.pin.close()
}

// unpin releases the descriptors of an idle watched database for the pin
// budget. The caller holds d.mu.
func (d *DB) unpin() {
	if d.pin.db == nil || d.app != nil {
		return
	}
	if d.st == stateHandedOver || d.st == stateClosed {
		d.stamp, _ = stampOf(d.path)
	}
	d.apply(evUnpin, "")
	d.releasePin()
}

// close releases the pin and drops what is not uploaded.
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
	d.dropBacklog()
	d.releasePin()
	return nil
}

// sync uploads everything committed to the database since the last sync:
// segments captured earlier, then new WAL transactions, a snapshot when one
// is needed, and finally a hand-over or a close of the WAL. Local work
// happens under d.mu in steps; uploads happen between steps without it.
func (d *DB) sync(ctx context.Context) error { return d.syncWith(ctx, true) }

// syncWith is sync. If urgent, a caller waits for the upload (Sync, a
// flush, the shutdown): during an outage, the backlog is tried at once
// rather than at the end of its backoff.
func (d *DB) syncWith(ctx context.Context, urgent bool) error {
	if err := d.upMu.lock(ctx); err != nil {
		return err
	}
	defer d.upMu.unlock()
	d.tryNow = urgent
	err := d.syncLocked(ctx, &syncState{start: time.Now()})
	d.noteSync(err)
	return err
}

// syncLocked is sync for a caller that holds d.upMu.
func (d *DB) syncLocked(ctx context.Context, st *syncState) error {
	for {
		// While the target does not take uploads, the sync goes on
		// locally: what it captures goes to the backlog (*offlineError).
		var off *offlineError
		if err := d.uploadPending(ctx, false); err != nil && !errors.As(err, &off) {
			return err
		}
		if err := d.resume(ctx); err != nil {
			return err
		}
		next, err := d.step(ctx, st)
		if err != nil {
			return err
		}
		switch next {
		case stepCapture:
			if err := d.runCapture(ctx, st); err != nil {
				return err
			}
		case stepSnapshot:
			if err := d.snapshot(ctx); err != nil {
				return err
			}
		case stepDone:
			return d.uploadPending(ctx, true)
		}
	}
}

// syncState is what one sync of a database has done so far.
type syncState struct {
	start     time.Time    // when the sync started
	captured  bool         // it captured everything committed before some point
	snapped   bool         // it took a snapshot
	snapTries int          // snapshots attempted
	plan      *capturePlan // the capture step planned
}

// stepResult tells the sync loop what comes after a step.
type stepResult int

const (
	stepDone     stepResult = iota // upload what is captured and stop
	stepAgain                      // upload what is captured and step again
	stepSnapshot                   // take a snapshot (without d.mu), then step again
	stepCapture                    // run st.plan (without d.mu), then step again
)

// runCapture runs the capture step planned, without d.mu, and commits it.
func (d *DB) runCapture(ctx context.Context, st *syncState) error {
	p := st.plan
	st.plan = nil
	p.run(d)
	if err := d.mu.lock(context.WithoutCancel(ctx)); err != nil {
		p.wf.f.Close()
		return err
	}
	defer d.mu.unlock()
	captured, whole, err := p.finish(d)
	switch {
	case errors.Is(err, errMovedOn):
		return nil // planned again by the next step
	case err != nil:
		return err
	case captured:
		st.captured = whole
	default:
		st.captured = true
		d.markDurableIfIdle(p.readAt)
	}
	return nil
}

// step does the next piece of local work and reports whether there is more
// (the caller uploads what was captured and calls step again): follow the
// database file, take a snapshot if the chain is broken, capture one
// segment, take a scheduled snapshot (at most one per sync), then hand the
// WAL over to SQLite or close it.
//
// A sync captures the WAL once (more often only when MaxSegmentBytes cut a
// capture short): transactions committed while its segment was uploading
// woke the inotify watch and go into the next sync, one sync interval
// later, so a busy database costs one segment per interval, not one per
// upload round trip.
func (d *DB) step(ctx context.Context, st *syncState) (stepResult, error) {
	if err := d.mu.lock(ctx); err != nil {
		return stepDone, err
	}
	defer d.mu.unlock()
	if d.st == stateNew {
		return stepAgain, nil // the caller resumes first
	}
	if err := d.followFile(ctx); err != nil {
		return stepDone, err
	}
	if d.st == stateGone {
		d.markDurableIfIdle(st.start)
		return stepDone, nil
	}
	if d.st == stateBroken && d.waitingForTarget() {
		return stepDone, nil // unpinned; the snapshot waits for the target
	}
	if err := d.repinIfNeeded(ctx); err != nil {
		return stepDone, err
	}
	if d.app != nil {
		d.pin.openSHM(d.shmPath) // the WAL-index this sync reads
	}
	// Re-arm the one-shot inotify watch before reading the WAL: a write
	// after this point wakes the next sync.
	if err := d.r.watch.armWAL(d); err != nil {
		return stepDone, err
	}
	if d.st == stateClosed && d.stamp != (fileStamp{}) {
		if cur, err := stampOf(d.path); err == nil && cur != d.stamp {
			d.apply(evDBChanged, "")
		} else if err == nil && d.pin.slot != 0 {
			// Pinned again, and unchanged since it was not: from now on
			// no generation can be restarted before it is read.
			d.stamp = fileStamp{}
		}
	}
	if d.st == stateBroken {
		return d.snapshotStep(st)
	}
	if !st.captured {
		attempt := time.Now()
		plan, err := d.capture(attempt)
		if err != nil {
			return stepDone, err
		}
		if plan != nil {
			st.plan = plan
			return stepCapture, nil
		}
		st.captured = true
		d.markDurableIfIdle(attempt)
	}
	if d.st == stateBroken { // the capture found a discontinuity
		return d.snapshotStep(st)
	}
	if !st.snapped && d.st != stateClosed && time.Since(d.snapAt) >= d.snapshotInterval() && d.snapAt.Before(st.start) {
		d.reason = "scheduled"
		return d.snapshotStep(st)
	}
	if err := d.maybeCheckpoint(ctx); err != nil {
		return stepDone, err
	}
	if d.st == stateBroken { // the hand-over found a discontinuity
		return d.snapshotStep(st)
	}
	return stepDone, d.closeIfAppClosed(ctx)
}

// snapshotStep asks the sync loop for a snapshot, at most twice a sync (a
// failed one is retried by the next sync).
func (d *DB) snapshotStep(st *syncState) (stepResult, error) {
	if st.snapped && st.snapTries >= 2 {
		return stepDone, nil
	}
	st.snapped = true
	st.snapTries++
	return stepSnapshot, nil
}

// markDurableIfIdle records that everything committed before t is durable
// when nothing captured is waiting and no capture was abandoned.
func (d *DB) markDurableIfIdle(t time.Time) {
	// d.bl (upMu, which every caller holds): changes only on local disk,
	// or dropped, while the target fails, are not durable.
	if d.st != stateBroken && len(d.pending) == 0 && d.bl == nil && !d.unsure {
		d.markDurable(t)
	}
	d.unsure = false
}

// followFile notices the database file deleted, replaced by another file,
// or created again after a deletion, and takes the transition.
func (d *DB) followFile(ctx context.Context) error {
	fi, err := os.Stat(d.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if d.st != stateGone {
			d.logger().Warn("database file deleted; replicated again if it reappears", "path", d.path)
			d.apply(evDeleted, "")
		}
		return nil
	case err != nil:
		return err
	}
	switch {
	case d.st == stateGone:
		s := d.apply(evCreated, "")
		return d.reopen(ctx, s)
	case inode(fi) != d.ino:
		d.dropStaleWAL()
		s := d.apply(evReplaced, "")
		return d.reopen(ctx, s)
	}
	return nil
}

// reopen carries out actReopen: the pin moves to the file now at the path.
func (d *DB) reopen(ctx context.Context, s step) error {
	if s.act != actReopen {
		return nil
	}
	d.releasePin()
	d.pos, d.stamp = wal.Pos{}, fileStamp{}
	if err := d.openLocked(ctx); err != nil {
		if errors.Is(err, ErrNotSQLite) || errors.Is(err, ErrNotWAL) || errors.Is(err, fs.ErrNotExist) {
			d.st = stateGone // not (yet) a WAL database: wait for the next change
			d.logger().Info("file at the database's path is not a WAL database yet", "error", err)
			return nil
		}
		return err
	}
	return nil
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
