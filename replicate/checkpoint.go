package replicate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/util/vfsutil"
	"github.com/ncruces/go-sqlite3/vfs"

	"github.com/walsync/walsync/internal/wal"
)

// maxWALFileBytes is the WAL file size above which walsync also truncates
// the file after restarting the WAL (a restarted WAL is reused in place).
const maxWALFileBytes = 64 << 20

// maybeCheckpoint lets SQLite restart the WAL once its current generation
// holds Options.CheckpointFrames frames, all of them replicated (the
// Following → HandedOver transition, on the watch path).
//
// The pin stops everyone else from restarting the WAL, so walsync owns WAL
// restarts (an application's RESTART or TRUNCATE checkpoint returns busy,
// as with Litestream's read transaction). The application's own PASSIVE
// checkpoints (auto-checkpoint included) still copy every frame into the
// database, because the pinned slot's mark is "not used". Once they have,
// the restart is handed back to SQLite without a window in which a frame
// can be lost, and without an SQLite connection:
//
//  1. Take the WAL write lock: no writer can append or restart now. If the
//     WAL-index says not every frame is in the database yet, give up until
//     a later sync (after 4x CheckpointFrames, run a PASSIVE checkpoint on
//     a short-lived connection for applications that never checkpoint).
//  2. Capture every committed frame not yet replicated (normally none), and
//     check that the capture reached the WAL-index's last commit frame: if
//     the checksum chain ends before it (a torn or stale frame), the frames
//     after the break cannot be read, which is a discontinuity.
//  3. Take READ_LOCK(0), release the slot, release the write lock. No
//     checkpoint can copy frames now, so only this fully copied generation
//     can be restarted, and all of it has been captured. The next writer
//     restarts the WAL; the new generation cannot be restarted in turn
//     until walsync has read it and swapped READ_LOCK(0) back for a slot.
//     A connection whose read transaction began before the checkpoint may
//     append to the old generation instead: walsync then takes its slot
//     back at once (HandedOver on evCommits), so the application's next
//     checkpoint can copy those frames.
//  4. Rarely, when the WAL file has grown past 64 MiB, a TRUNCATE checkpoint
//     on a short-lived connection shrinks it; a gate on the WAL's Truncate
//     captures any committed frame not yet replicated before it is lost.
func (d *DB) maybeCheckpoint(ctx context.Context) error {
	if d.app != nil || d.st != stateFollowing || d.pos.IsZero() || len(d.pending) > 0 || d.pin.shm == nil || d.pin.slot == 0 {
		return nil
	}
	frames := d.framesAt(d.pos)
	limit := int64(d.r.opts.CheckpointFrames)
	if frames < limit {
		return nil
	}
	st, ok := d.pin.state()
	if ok && sameSalts(d.pos, st) && st.nBackfill < st.mxFrame && frames >= 4*limit {
		if err := d.passiveCheckpoint(ctx); err != nil {
			return err
		}
	}
	handed, err := d.handOver(evBackfilled)
	if err != nil || !handed {
		return err
	}
	if fi, err := os.Stat(d.walPath); err == nil && fi.Size() > maxWALFileBytes {
		return d.truncateWAL(ctx, false)
	}
	return nil
}

// handOver carries out actHandOver (steps 1 to 3 above) and takes the
// transition for ev, evBackfilled or evAppClosed. It reports false if the
// WAL is not fully copied into the database or a writer is active. The
// caller holds d.mu.
func (d *DB) handOver(ev event) (bool, error) {
	st, ok := d.pin.state()
	if !ok || !sameSalts(d.pos, st) || st.nBackfill < st.mxFrame {
		return false, nil
	}
	if err := d.pin.lockWriter(); errors.Is(err, errLockBusy) {
		return false, nil // a writer is active; try again later
	} else if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	st, ok = d.pin.state()
	if !ok || !sameSalts(d.pos, st) || st.nBackfill < st.mxFrame {
		return false, d.pin.unlockWriter()
	}
	err := d.captureRawTail()
	short := err == nil && d.framesAt(d.pos) < int64(st.mxFrame)
	if err == nil {
		err = d.pin.lockZero()
	}
	if err == nil {
		err = d.pin.unlockSlot()
	}
	if uerr := d.pin.unlockWriter(); err == nil {
		err = uerr
	}
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	if short {
		// The snapshot reads the database file alone: every frame is in
		// it, and READ_LOCK(0) keeps it so.
		d.apply(evChainShort, fmt.Sprintf("%s (frame %d of %d)", whyChain, d.framesAt(d.pos), st.mxFrame))
		return false, nil
	}
	d.apply(ev, "")
	d.r.stats.checkpoints.Add(1)
	return true, nil
}

// framesAt returns the number of frames before pos in its generation.
func (d *DB) framesAt(pos wal.Pos) int64 {
	if pos.Offset < wal.HeaderSize {
		return 0
	}
	return (pos.Offset - wal.HeaderSize) / (wal.FrameHeaderSize + int64(d.walPageSize()))
}

// appGone reports, without waiting, whether a watched database that
// follows a WAL has no application connection left.
func (d *DB) appGone() bool {
	if d.app != nil || !d.mu.tryLock() {
		return false
	}
	defer d.mu.unlock()
	return (d.st == stateFollowing || d.st == stateHandedOver) && d.pin.shm != nil && !d.pin.othersAttached()
}

// closeNow empties the WAL of a watched database whose application just
// closed its last connection, on the watcher's goroutine, unless a sync is
// running (it does the same when it ends): the scheduler's queue may be
// seconds long, and the files may be replaced as soon as the application
// has stopped.
func (d *DB) closeNow(ctx context.Context) {
	if !d.upMu.tryLock() {
		return
	}
	defer d.upMu.unlock()
	if err := d.mu.lock(ctx); err != nil {
		return
	}
	defer d.mu.unlock()
	if d.st != stateFollowing && d.st != stateHandedOver {
		return
	}
	if err := d.closeIfAppClosed(ctx); err != nil {
		d.logger().Warn("empty the WAL after the application closed", "error", err)
	}
}

// dropStaleWAL neutralises, on the watch path, the WAL and WAL-index left
// by a database file that was replaced while no connection had it open:
// left as they are, the next connection would read the old file's frames
// over the new file. Under the WAL write lock, walsync copies the old
// generation's last commits (they belong to the replaced database's chain),
// truncates the WAL and marks the WAL-index uninitialised, so that the next
// connection rebuilds it from the empty WAL, as SQLite does for a database
// nobody had open. The caller holds d.mu, with the old file still pinned.
func (d *DB) dropStaleWAL() {
	if d.app != nil || d.pin.shm == nil || d.pos.IsZero() || d.pin.othersAttached() {
		return
	}
	wf, err := openWALWith(d.walPath, nil)
	if err != nil || wf == nil {
		return
	}
	ours := d.pos.SameGen(wf.hdr)
	wf.f.Close()
	if !ours {
		return
	}
	if err := d.pin.lockWriter(); err != nil {
		return
	}
	defer d.pin.unlockWriter()
	if d.pin.othersAttached() {
		return
	}
	if err := d.captureRawTail(); err != nil {
		d.logger().Warn("capture the replaced database's last commits", "error", err)
	}
	if err := os.Truncate(d.walPath, 0); err != nil {
		d.logger().Warn("empty the WAL left by the replaced database", "error", err)
		return
	}
	if err := d.pin.uninitSHM(); err != nil {
		d.logger().Warn("reset the WAL-index left by the replaced database", "error", err)
	}
	d.logger().Info("emptied the WAL left by the replaced database file")
}

// closeIfAppClosed leaves a watched database whose application closed its
// last connection as SQLite would, once everything in its WAL is captured
// and uploaded: the WAL is checkpointed into the database and truncated to
// zero bytes, so the database file alone is the database and can be copied
// or replaced while the application is stopped. (SQLite's last connection
// deletes the WAL; walsync keeps an empty one, and its pin on the
// WAL-index, so that the next session's first frames are protected before
// walsync has read them. For SQLite an empty WAL is no WAL.)
//
// Following → HandedOver (hand-over, whatever the WAL's length) →
// Closed (TRUNCATE checkpoint, slot taken back), both on evAppClosed.
//
// It does not wait for uploads: the last commits are copied under the WAL
// write lock first, and a crash before they are uploaded costs a snapshot
// (the record's TXID is not the target's), never data (the database file
// holds them).
func (d *DB) closeIfAppClosed(ctx context.Context) error {
	if d.app != nil || d.pin.shm == nil {
		return nil
	}
	if d.pin.othersAttached() {
		return nil
	}
	if d.st == stateClosed || (d.st == stateFollowing && d.framesAt(d.pos) == 0) {
		// Nothing captured of the WAL's generation: if nothing of it is
		// committed either, it holds only a rolled-back spill.
		if emptied, err := d.dropUncommitted(); err != nil || !emptied {
			return err
		}
		d.apply(evEmptied, "")
		return nil
	}
	if d.st != stateFollowing && d.st != stateHandedOver {
		return nil
	}
	if d.st == stateFollowing {
		if d.pos.IsZero() {
			return nil
		}
		if st, ok := d.pin.state(); ok && sameSalts(d.pos, st) && st.nBackfill < st.mxFrame {
			if err := d.passiveCheckpoint(ctx); err != nil {
				return err
			}
		}
		handed, err := d.handOver(evAppClosed)
		if err != nil || !handed {
			return err
		}
	}
	if transition(d.st, evAppClosed).act != actClose {
		return nil
	}
	if err := d.truncateWAL(ctx, true); err != nil {
		// (A checkpoint busy for a moment, a connection closing.) Nothing
		// else would wake this database up once its application stopped:
		// try again next interval, so that its WAL is emptied as SQLite's
		// last close would have.
		d.debug("truncate wal after the application closed", "error", err)
		d.r.sched.notify(d)
		return nil
	}
	if fi, err := os.Stat(d.walPath); err != nil || fi.Size() != 0 || d.pin.othersAttached() {
		return nil // written or opened meanwhile: the next sync follows it
	}
	if err := d.retake(); err != nil || d.pin.slot == 0 {
		return err
	}
	// The emptied WAL-index still records the database's size and page
	// size: marked uninitialised, it is rebuilt from the database file by
	// the next connection (as SQLite's last close leaves none), so that a
	// file put at the path while the application is stopped is read as it
	// is. walsync's read-mark slot survives the rebuild.
	if err := d.pin.lockWriter(); err == nil {
		if !d.pin.othersAttached() {
			if err := d.pin.uninitSHM(); err != nil {
				d.logger().Warn("reset the WAL-index after the application closed", "error", err)
			}
		}
		d.pin.unlockWriter()
	}
	gen := d.pos
	d.apply(evAppClosed, "")
	stamp, err := stampOf(d.path)
	if err != nil {
		return nil
	}
	// For a restart of walsync: the chain continues over this file, if it
	// is unchanged.
	rec := closedRecord{After: d.txid, Gen: [2]uint32{gen.Salt1, gen.Salt2}, Stamp: stamp}
	if err := writeRecord(d.recordDir(), rec); err != nil {
		d.debug("record closed wal", "error", err)
	}
	return nil
}

// dropUncommitted empties the WAL of a stopped application if its
// generation holds nothing committed: a transaction that spilled into the
// WAL and rolled back leaves its frames there, which SQLite's last close
// would have deleted. With the write lock held and nobody attached, the
// WAL-index is marked for rebuilding, then the file truncated. The caller
// holds d.mu.
func (d *DB) dropUncommitted() (bool, error) {
	if fi, err := os.Stat(d.walPath); err != nil || fi.Size() == 0 {
		return false, nil
	}
	if st, ok := d.pin.state(); !ok || st.mxFrame != 0 {
		return false, nil // something committed: the sync follows it
	}
	if err := d.pin.lockWriter(); errors.Is(err, errLockBusy) {
		d.r.sched.notify(d) // a writer: try again next interval
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer d.pin.unlockWriter()
	if st, ok := d.pin.state(); !ok || st.mxFrame != 0 || d.pin.othersAttached() {
		return false, nil
	}
	if err := d.pin.uninitSHM(); err != nil {
		return false, err
	}
	f, err := os.OpenFile(d.walPath, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return false, err
	}
	return true, f.Sync()
}

// passiveCheckpoint copies the WAL into the database on a short-lived
// connection, for applications that never checkpoint themselves.
func (d *DB) passiveCheckpoint(ctx context.Context) error {
	defer setGate(d.walPath, d.ino, nil)()
	conn, err := openCheckpointConn(ctx, d.path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer conn.Close()
	if _, _, _, err := walCheckpoint(conn, "PASSIVE"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// truncateWAL runs a TRUNCATE checkpoint after a hand-over (READ_LOCK(0)
// held, no slot). It succeeds only if nothing was written since: a writer
// that restarted the WAL meanwhile left frames that cannot be copied.
//
// If uninit (the application stopped), the WAL-index is also marked for
// rebuilding in the gate, before SQLite truncates the file: whoever sees
// the WAL empty (and may then put another database file at the path, as
// the README allows) also finds an index that the next connection rebuilds
// from the database file, never one that still records the old file's
// size and page size (a new file of another page size was read as
// malformed in that window).
func (d *DB) truncateWAL(ctx context.Context, uninit bool) error {
	if h := d.r.testHooks.beforeTruncate; h != nil {
		if err := h(); err != nil {
			return fmt.Errorf("truncate wal: %w", err)
		}
	}
	defer setGate(d.walPath, d.ino, nil)()
	conn, err := openCheckpointConn(ctx, d.path)
	if err != nil {
		return fmt.Errorf("truncate wal: %w", err)
	}
	defer conn.Close()
	// Never wait for readers while holding the write lock (Litestream #724).
	if err := conn.BusyTimeout(0); err != nil {
		return fmt.Errorf("truncate wal: %w", err)
	}
	unregister := setGate(d.walPath, d.ino, func() error {
		d.adoptHandedOver()
		err := d.captureRawTail()
		if errors.Is(err, errOtherGeneration) && d.st == stateHandedOver {
			err = nil // an empty WAL: everything of the generation handed over is captured
		}
		if err != nil {
			d.discontinuity("capture before WAL truncate failed: " + err.Error())
		}
		if uninit && err == nil {
			// SQLite holds the write lock for the truncate. (Our own
			// checkpoint connection is attached, so othersAttached cannot
			// tell; nobody else was when the close began, and a connection
			// that attached since rebuilds the index as after a crash.)
			if err := d.pin.uninitSHM(); err != nil {
				d.logger().Warn("reset the WAL-index after the application closed", "error", err)
			}
		}
		return nil
	})
	defer unregister()
	if _, _, _, err := walCheckpoint(conn, "TRUNCATE"); err != nil {
		return fmt.Errorf("truncate wal: %w", err)
	}
	return nil
}

// adoptHandedOver makes a generation that SQLite started after a hand-over,
// and that a TRUNCATE checkpoint is about to discard, the one being
// captured (HandedOver keeps: it is fully copied, READ_LOCK(0) held). The
// caller holds d.mu, in a gate.
func (d *DB) adoptHandedOver() {
	if d.st != stateHandedOver {
		return
	}
	wf, err := openWALWith(d.walPath, nil)
	if err != nil || wf == nil {
		return
	}
	defer wf.f.Close()
	if !d.pos.SameGen(wf.hdr) {
		d.pos = wf.hdr.Start()
	}
}

// walPageSize returns the page size of the current WAL generation.
func (d *DB) walPageSize() uint32 {
	if wf, err := openWALWith(d.walPath, nil); err == nil && wf != nil {
		wf.f.Close()
		return wf.hdr.PageSize
	}
	return 4096
}

// walCheckpoint runs PRAGMA wal_checkpoint(mode) and returns its busy flag,
// the number of frames in the WAL and the number copied to the database.
func walCheckpoint(conn *sqlite3.Conn, mode string) (busy bool, log, done int, err error) {
	stmt, _, err := conn.Prepare("PRAGMA wal_checkpoint(" + mode + ")")
	if err != nil {
		return false, 0, 0, err
	}
	defer stmt.Close()
	if !stmt.Step() {
		return false, 0, 0, errors.Join(stmt.Err(), errors.New("wal_checkpoint returned no row"))
	}
	return stmt.ColumnInt(0) != 0, stmt.ColumnInt(1), stmt.ColumnInt(2), stmt.Err()
}

// withReadTxn runs fn while a short-lived SQLite connection holds a read
// transaction on the database, which opens (and if needed rebuilds) its
// WAL-index the way SQLite requires.
func withReadTxn(ctx context.Context, path string, fn func() error) error {
	conn, err := openCheckpointConn(ctx, path)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec("BEGIN"); err != nil {
		return err
	}
	stmt, _, err := conn.Prepare("SELECT count(*) FROM sqlite_schema")
	if err != nil {
		return err
	}
	if !stmt.Step() {
		err = errors.Join(stmt.Err(), errors.New("read schema: no row"))
	}
	if err == nil {
		err = fn()
	}
	return errors.Join(err, stmt.Close(), conn.Exec("ROLLBACK"))
}

// openCheckpointConn opens a connection through the gate VFS. It waits up
// to a second for locks (an application opening or recovering the
// database at the same moment), except in wal_checkpoint's own waits for
// readers, which SQLite bounds separately.
func openCheckpointConn(ctx context.Context, path string) (*sqlite3.Conn, error) {
	registerGate()
	u := url.URL{Scheme: "file", Path: path, RawQuery: "vfs=" + gateVFSName}
	conn, err := sqlite3.OpenContext(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := conn.BusyTimeout(time.Second); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// The gate VFS is the OS VFS with three changes, for the WAL paths that
// have a gate registered: before the WAL is truncated to zero or deleted,
// the gate's callback runs, while SQLite holds the WAL write lock and
// every read lock (or, for a delete, an EXCLUSIVE lock on the database);
// and the database file is opened only if it is the file the gate names
// (its inode), never a file put at the path in its place.
const gateVFSName = "walsync-gate"

// gateEntry is one registered gate.
type gateEntry struct {
	ino uint64       // the database file's inode; 0: any
	fn  func() error // runs before the WAL is truncated to zero or deleted
}

var gate struct {
	once sync.Once
	mu   sync.Mutex
	fns  map[string]gateEntry // +checklocks:mu, by WAL path
}

func registerGate() {
	gate.once.Do(func() {
		gate.fns = make(map[string]gateEntry)
		vfs.Register(gateVFSName, gateVFS{vfs.Find("")})
	})
}

// setGate registers fn for walPath until the returned func is called.
func setGate(walPath string, ino uint64, fn func() error) (unregister func()) {
	registerGate()
	gate.mu.Lock()
	gate.fns[walPath] = gateEntry{ino: ino, fn: fn}
	gate.mu.Unlock()
	return func() {
		gate.mu.Lock()
		delete(gate.fns, walPath)
		gate.mu.Unlock()
	}
}

func gateFor(walPath string) gateEntry {
	gate.mu.Lock()
	defer gate.mu.Unlock()
	return gate.fns[walPath]
}

type gateVFS struct{ vfs.VFS }

// errOtherFile refuses to open a file put at the database's path in place
// of the one replicated.
var errOtherFile = errors.New("the database file at the path is not the one replicated")

func (g gateVFS) OpenFilename(name *vfs.Filename, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	f, flags, err := vfsutil.WrapOpenFilename(g.VFS, name, flags)
	if err != nil || name == nil {
		return f, flags, err
	}
	if flags&vfs.OPEN_MAIN_DB != 0 {
		if e := gateFor(name.String() + "-wal"); e.ino != 0 {
			st, ok := f.(interface{ Stat() (os.FileInfo, error) })
			if !ok {
				f.Close()
				return nil, flags, errOtherFile
			}
			if fi, err := st.Stat(); err != nil || inode(fi) != e.ino {
				f.Close()
				return nil, flags, errOtherFile
			}
		}
		return f, flags, nil
	}
	if flags&vfs.OPEN_WAL == 0 {
		return f, flags, nil
	}
	return &gateFile{File: f, path: name.String()}, flags, nil
}

func (g gateVFS) Delete(name string, syncDir bool) error {
	if e := gateFor(name); e.fn != nil {
		if err := e.fn(); err != nil {
			return err // keep the WAL: SQLite reports the failed delete
		}
	}
	return g.VFS.Delete(name, syncDir)
}

type gateFile struct {
	vfs.File
	path string
}

func (f *gateFile) Truncate(size int64) error {
	if size == 0 {
		if e := gateFor(f.path); e.fn != nil {
			if err := e.fn(); err != nil {
				return err // keep the frames: SQLite reports the failed truncate
			}
		}
	}
	return f.File.Truncate(size)
}

func (f *gateFile) Unwrap() vfs.File { return f.File }
