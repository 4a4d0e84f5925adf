package replicate

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"

	"github.com/walsync/walsync/internal/wal"

	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/util/vfsutil"
	"github.com/ncruces/go-sqlite3/vfs"
)

// maxWALFileBytes is the WAL file size above which walsync also truncates
// the file after restarting the WAL (a restarted WAL is reused in place).
const maxWALFileBytes = 64 << 20

// maybeCheckpoint lets SQLite restart the WAL once its current generation
// holds Options.CheckpointFrames frames, all of them replicated.
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
//  2. Capture every committed frame not yet replicated (normally none).
//  3. Take READ_LOCK(0), release the slot, release the write lock. No
//     checkpoint can copy frames now, so only this fully copied generation
//     can be restarted, and all of it has been captured. The next writer
//     restarts the WAL; the new generation cannot be restarted in turn
//     until walsync has read it and swapped READ_LOCK(0) back for a slot
//     (DB.repin).
//  4. Rarely, when the WAL file has grown past 64 MiB, a TRUNCATE checkpoint
//     on a short-lived connection shrinks it; a gate on the WAL's Truncate
//     captures any committed frame not yet replicated before it is lost.
func (d *DB) maybeCheckpoint(ctx context.Context) error {
	if d.app != nil {
		return nil // the application checkpoints; the VFS gate protects the WAL
	}
	if d.pos.IsZero() || d.newGenOK || len(d.pending) > 0 || d.pin.shm == nil {
		return nil
	}
	frames := (d.pos.Offset - wal.HeaderSize) / (wal.FrameHeaderSize + int64(d.walPageSize()))
	limit := int64(d.r.opts.CheckpointFrames)
	if frames < limit {
		return nil
	}
	if d.pin.slot == 0 {
		// An earlier hand-over found frames not copied: take the slot back
		// so checkpoints can copy them.
		if err := d.repin(); err != nil {
			return err
		}
	}
	st, ok := d.pin.state()
	if ok && sameSalts(d.pos, st) && st.nBackfill < st.mxFrame && frames >= 4*limit {
		if err := d.passiveCheckpoint(ctx); err != nil {
			return err
		}
		st, ok = d.pin.state()
	}
	if !ok || !sameSalts(d.pos, st) || st.nBackfill < st.mxFrame {
		return nil
	}
	if err := d.pin.lockWriter(); errors.Is(err, errLockBusy) {
		return nil // a writer is active; try again later
	} else if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	st, ok = d.pin.state()
	if !ok || !sameSalts(d.pos, st) || st.nBackfill < st.mxFrame {
		return d.pin.unlockWriter()
	}
	err := d.captureTail()
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
		return fmt.Errorf("checkpoint: %w", err)
	}
	d.newGenOK = true
	d.r.stats.checkpoints.Add(1)
	if fi, err := os.Stat(d.walPath); err == nil && fi.Size() > maxWALFileBytes {
		return d.truncateWAL(ctx)
	}
	return nil
}

// passiveCheckpoint copies the WAL into the database on a short-lived
// connection, for applications that never checkpoint themselves.
func (d *DB) passiveCheckpoint(ctx context.Context) error {
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
func (d *DB) truncateWAL(ctx context.Context) error {
	conn, err := openCheckpointConn(ctx, d.path)
	if err != nil {
		return fmt.Errorf("truncate wal: %w", err)
	}
	defer conn.Close()
	// Never wait for readers while holding the write lock (Litestream #724).
	if err := conn.BusyTimeout(0); err != nil {
		return fmt.Errorf("truncate wal: %w", err)
	}
	unregister := setGate(d.walPath, func() error {
		if err := d.captureTail(); err != nil {
			d.discontinuity("capture before WAL truncate failed: " + err.Error())
		}
		return nil
	})
	defer unregister()
	if _, _, _, err := walCheckpoint(conn, "TRUNCATE"); err != nil {
		return fmt.Errorf("truncate wal: %w", err)
	}
	return nil
}

// captureTail captures the committed frames after the replicated position
// into a pending segment, before the WAL can be restarted or truncated.
func (d *DB) captureTail() error {
	wf, err := d.openWAL()
	if err != nil || wf == nil {
		return err
	}
	defer wf.f.Close()
	if !d.pos.SameGen(wf.hdr) && d.app != nil && d.app.nextIs(wf.hdr) {
		// A generation the VFS announced and no sync has read yet: it is
		// the one being reset, and all of it must be captured.
		d.pos, d.app.next, d.app.closed = wf.hdr.Start(), nil, false
	}
	if !d.pos.SameGen(wf.hdr) || wf.size < d.pos.Offset {
		return nil // nothing of the replicated generation left to capture
	}
	scan, err := scanWAL(wf.r, wf.hdr, d.pos, 0, d.maxFrame(wf.hdr))
	if err != nil || scan.empty() {
		return err
	}
	seg, err := d.newSegment(scan)
	if err != nil {
		return err
	}
	d.pending = append(d.pending, seg)
	d.txid, d.pos, d.lastTS = seg.maxTXID, scan.end, seg.ts.UnixMilli()
	return nil
}

// walPageSize returns the page size of the current WAL generation.
func (d *DB) walPageSize() uint32 {
	if wf, err := openWAL(d.walPath); err == nil && wf != nil {
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

// The gate VFS is the OS VFS with one change: before a WAL file is
// truncated to zero, the callback registered for it runs, while SQLite
// holds the WAL write lock and every read lock.
const gateVFSName = "walsync-gate"

var gate struct {
	once sync.Once
	mu   sync.Mutex
	fns  map[string]func() error // +checklocks:mu, by WAL path
}

func registerGate() {
	gate.once.Do(func() {
		gate.fns = make(map[string]func() error)
		vfs.Register(gateVFSName, gateVFS{vfs.Find("")})
	})
}

// setGate registers fn for walPath until the returned func is called.
func setGate(walPath string, fn func() error) (unregister func()) {
	gate.mu.Lock()
	gate.fns[walPath] = fn
	gate.mu.Unlock()
	return func() {
		gate.mu.Lock()
		delete(gate.fns, walPath)
		gate.mu.Unlock()
	}
}

type gateVFS struct{ vfs.VFS }

func (g gateVFS) OpenFilename(name *vfs.Filename, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	f, flags, err := vfsutil.WrapOpenFilename(g.VFS, name, flags)
	if err != nil || flags&vfs.OPEN_WAL == 0 || name == nil {
		return f, flags, err
	}
	return &gateFile{File: f, path: name.String()}, flags, nil
}

type gateFile struct {
	vfs.File
	path string
}

func (f *gateFile) Truncate(size int64) error {
	if size == 0 {
		gate.mu.Lock()
		fn := gate.fns[f.path]
		gate.mu.Unlock()
		if fn != nil {
			if err := fn(); err != nil {
				return err // keep the frames: SQLite reports the failed truncate
			}
		}
	}
	return f.File.Truncate(size)
}

func (f *gateFile) Unwrap() vfs.File { return f.File }
