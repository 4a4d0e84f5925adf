package replicate

// Regression tests for the cases of issue 8: each failed on the engine
// before the state machine (commit 8c2fede) and passes now.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/util/vfsutil"
	"github.com/ncruces/go-sqlite3/vfs"

	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/internal/wal"
)

// commitHookVFS is the OS VFS with a hook that runs once, right after the
// page of a commit frame is written to a WAL: SQLite has not updated the
// WAL-index yet, and will not write the WAL again for this transaction.
type commitHookVFS struct {
	vfs.VFS
	hook atomic.Pointer[func()]
}

var hookVFSSeq atomic.Int64

// registerCommitHookVFS registers a commitHookVFS under a fresh name.
func registerCommitHookVFS(t *testing.T) (*commitHookVFS, string) {
	v := &commitHookVFS{VFS: vfs.Find("")}
	name := fmt.Sprintf("commit-hook-%d", hookVFSSeq.Add(1))
	vfs.Register(name, v)
	t.Cleanup(func() { vfs.Unregister(name) })
	return v, name
}

func (v *commitHookVFS) OpenFilename(name *vfs.Filename, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	f, flags, err := vfsutil.WrapOpenFilename(v.VFS, name, flags)
	if err != nil || flags&vfs.OPEN_WAL == 0 {
		return f, flags, err
	}
	return &hookWAL{File: f, v: v}, flags, nil
}

type hookWAL struct {
	vfs.File
	v      *commitHookVFS
	commit bool // the last frame header written is a commit frame's
}

func (f *hookWAL) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	switch {
	case off >= wal.HeaderSize && len(p) == wal.FrameHeaderSize:
		f.commit = binary.BigEndian.Uint32(p[4:]) != 0
	case f.commit && len(p) > wal.FrameHeaderSize:
		f.commit = false
		if h := f.v.hook.Swap(nil); h != nil {
			(*h)()
		}
	}
	return n, err
}

func (f *hookWAL) Unwrap() vfs.File          { return f.File }
func (f *hookWAL) SizeHint(size int64) error { return vfsutil.WrapSizeHint(f.File, size) }
func (f *hookWAL) ChunkSize(size int)        { vfsutil.WrapChunkSize(f.File, size) }

// TestLoneCommitShips: a single commit into a quiet database is durable
// within the lag bound although nothing is written after it, and although
// walsync's sync read its commit frame before SQLite added it to the
// WAL-index (the sync the frame's own inotify event started). Before, the
// scan stopped at the WAL-index's last commit and the one-shot watch had
// fired: the commit waited for the next write, forever on a quiet database.
func TestLoneCommitShips(t *testing.T) {
	hv, vfsName := registerCommitHookVFS(t)
	f := newFixture(t, Options{SyncInterval: 20 * time.Millisecond})
	app, err := sqlite3.Open("file:" + f.path + "?vfs=" + vfsName)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.Exec("INSERT INTO t VALUES (1, x'01')"); err != nil {
		t.Fatal(err)
	}
	stop := runReplicator(t, f.r)
	defer stop()
	if err := f.r.Sync(f.ctx); err != nil {
		t.Fatal(err)
	}
	// The hook holds SQLite between writing the commit frame and updating
	// the WAL-index until a sync that started after the write is done.
	hook := func() {
		wrote := time.Now()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			f.r.sched.mu.Lock()
			st := f.d.sched
			f.r.sched.mu.Unlock()
			if st.last.After(wrote) && !st.running {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	hv.hook.Store(&hook)
	if err := app.Exec("INSERT INTO t VALUES (2, x'02')"); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	if hv.hook.Load() != nil {
		t.Fatal("the hook did not run: no commit frame seen")
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	if err := f.d.WaitDurable(ctx, committed); err != nil {
		t.Fatalf("the lone commit is not durable 10 s later: %v", err)
	}
	f.checkRestore()
}

// TestHandOverRetaken: a connection whose read transaction began before a
// checkpoint writes after walsync handed the WAL over, so SQLite appends to
// the old generation instead of restarting it. walsync must take its slot
// back so that the application's next checkpoint can copy those frames and
// the WAL can restart: with wal_autocheckpoint=0 and manual checkpoints,
// the WAL stays bounded. Before, walsync kept READ_LOCK(0) for good and the
// WAL grew by a round's frames every round.
func TestHandOverRetaken(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately, CheckpointFrames: 20})
	if err := f.app.Exec("PRAGMA wal_autocheckpoint=0"); err != nil {
		t.Fatal(err)
	}
	b, err := sqlite3.Open(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.BusyTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	exec := func(c *sqlite3.Conn, sql string) {
		t.Helper()
		if err := c.Exec(sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	walSize := func() int64 {
		fi, err := os.Stat(f.path + "-wal")
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	frame := int64(4096 + wal.FrameHeaderSize)
	var sizes []int64
	for round := range 8 {
		exec(f.app, fmt.Sprintf("BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 30) INSERT INTO t SELECT %d*100+i, randomblob(3000) FROM c; COMMIT;", round))
		f.sync()
		exec(b, "BEGIN; SELECT count(*) FROM t;") // a read that will write later
		exec(f.app, "PRAGMA wal_checkpoint(PASSIVE)")
		f.sync() // hands the WAL over
		exec(b, fmt.Sprintf("INSERT INTO t VALUES (%d, randomblob(3000)); COMMIT;", -round))
		f.sync() // the old generation went on: the slot is taken back
		exec(f.app, "PRAGMA wal_checkpoint(PASSIVE)")
		f.sync() // hands over again: the next write restarts the WAL
		sizes = append(sizes, walSize())
	}
	if last, limit := sizes[len(sizes)-1], 3*40*frame; last > limit {
		t.Fatalf("WAL grew to %d bytes over 8 rounds (sizes %v), want at most %d", last, sizes, limit)
	}
	f.checkRestore()
}

// TestChainShortIsDiscontinuity: a frame inside the committed part of the WAL
// whose checksum does not verify (torn or stale on disk) ends the checksum
// chain before the WAL-index's last commit. Neither the capture nor the
// hand-over may pass it silently: it is a discontinuity, logged, answered
// with a snapshot of the database file once every frame is copied into it,
// and the restore equals the source. Before, walsync stopped at the break
// and later handed the WAL over having captured only the frames before it:
// the next restart discarded the others.
func TestChainShortIsDiscontinuity(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately, CheckpointFrames: 4})
	if err := f.app.Exec("PRAGMA wal_autocheckpoint=0"); err != nil {
		t.Fatal(err)
	}
	f.write(2)
	f.sync()
	before := f.walFrames()
	f.write(3)
	f.write(3)
	// Break the chain at the first frame written after the last capture:
	// flip a bit of its stored checksum. SQLite reads pages through the
	// WAL-index and never checks it.
	wf, err := os.OpenFile(f.path+"-wal", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := wal.HeaderSize + before*int64(4096+wal.FrameHeaderSize) + 16
	var b [1]byte
	wf.ReadAt(b[:], off)
	b[0] ^= 1
	wf.WriteAt(b[:], off)
	wf.Close()
	if err := f.app.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		t.Fatal(err)
	}
	// A break is taken for a torn read twice (the sync looks again), the
	// third time for what it is.
	for range 3 {
		f.sync()
	}
	f.write(2) // restarts the WAL if walsync handed it over
	f.sync()
	f.wantSnapshot(whyChain)
	f.checkRestore()
}

// walFrames returns the number of frames in the WAL file.
func (f *fixture) walFrames() int64 {
	fi, err := os.Stat(f.path + "-wal")
	if err != nil || fi.Size() < wal.HeaderSize {
		return 0
	}
	return (fi.Size() - wal.HeaderSize) / (4096 + wal.FrameHeaderSize)
}

// TestAppStoppedFileReplaced: the application stops (its last connection
// closes) and its database file is replaced (`mv other.db app.db`), as
// people do when no connection is open. With walsync running, the
// application must then read the new file, as it does without walsync, and
// walsync replicates the new file from a snapshot. Before, walsync's pin
// kept the old WAL alive (the last close could not checkpoint and delete
// it), so the reopened application read the old rows over the new file.
func TestAppStoppedFileReplaced(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately})
	// 300 rows in a few frames: no auto-checkpoint copies them into the
	// database, so SQLite's readers would take them from the WAL.
	runSQLite(t, f.path, "BEGIN;"+strings.Repeat("INSERT INTO t VALUES (1, x'01');", 300)+"COMMIT;")
	f.sync()
	f.closeApp()
	f.sync() // the application stopped: walsync closes the WAL as SQLite would
	other := filepath.Join(f.dir, "other.db")
	runSQLite(t, other, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);"+strings.Repeat("INSERT INTO t VALUES (7, x'07');", 5))
	if err := os.Rename(other, f.path); err != nil {
		t.Fatal(err)
	}
	if got, want := runSQLite(t, f.path, "SELECT count(*) FROM t; PRAGMA integrity_check;"), "5\nok\n"; got != want {
		t.Fatalf("the application reads %q after the file was replaced, want %q", got, want)
	}
	f.sync()
	f.wantSnapshot(whyReplaced)
	f.checkRestore()
}

// TestDeletedCreatedAgain: a database given by path is deleted, then a
// database is created again at the same path; it is replicated again, from
// a snapshot, and a Sync in between succeeds (everything the deleted one
// committed was uploaded). Before, walsync dropped it for good after one
// WARN, the Sync failed with "database file deleted", and restores kept
// returning the old content.
func TestDeletedCreatedAgain(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately})
	f.write(10)
	f.sync()
	f.closeApp()
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(f.path + s)
	}
	if err := f.r.Sync(f.ctx); err != nil {
		t.Fatalf("Sync after the delete: %v (everything was uploaded)", err)
	}
	runSQLite(t, f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB); INSERT INTO t VALUES (42, x'2a');")
	f.sync()
	f.wantSnapshot(whyCreated)
	f.checkRestore()
	f.write(3)
	f.sync()
	f.checkRestore()
}

// TestTornHeaderRead: a WAL header that does not validate for a moment
// (read while SQLite writes it) is looked at again, not answered with a
// snapshot. Before, one such read was reported as "WAL deleted, truncated
// or rewritten by another process" and a needless snapshot followed.
func TestTornHeaderRead(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately})
	f.write(5)
	f.sync()
	walPath := f.path + "-wal"
	good := make([]byte, wal.HeaderSize)
	wf, err := os.OpenFile(walPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	if _, err := wf.ReadAt(good, 0); err != nil {
		t.Fatal(err)
	}
	torn := append([]byte(nil), good...)
	copy(torn[16:24], []byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef}) // new salts, old checksum
	wf.WriteAt(torn, 0)
	f.sync()
	wf.WriteAt(good, 0)
	f.write(5)
	f.sync()
	if got := f.snapshots(); len(got) != 1 {
		t.Fatalf("snapshots %q, want only the first", got)
	}
	f.checkRestore()
}

// TestAbandonedCaptureNotDurable: a capture abandoned because the WAL
// changed while its pages were read leaves the commits it read not durable
// (WaitDurable and Flush must not return before they are uploaded).
// Before, the sync marked everything committed before it durable.
func TestAbandonedCaptureNotDurable(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately})
	f.write(3)
	f.sync()
	durable := f.d.durableAt
	f.write(3)
	committed := time.Now()
	walPath := f.path + "-wal"
	var seq [4]byte
	var once sync.Once
	f.r.testHooks.afterScan = func() {
		once.Do(func() {
			// The WAL header changes between the scan and the re-read of
			// its pages (a restart): the capture cannot be trusted.
			wf, err := os.OpenFile(walPath, os.O_RDWR, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer wf.Close()
			wf.ReadAt(seq[:], 12)
			bumped := seq
			bumped[3]++
			wf.WriteAt(bumped[:], 12) // checkpoint sequence
		})
	}
	f.sync()
	f.r.testHooks.afterScan = nil
	if !f.d.durableAt.Before(committed) {
		t.Fatalf("durable up to %v after an abandoned capture, want before the commit at %v (was %v)", f.d.durableAt, committed, durable)
	}
	wf, err := os.OpenFile(walPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	wf.WriteAt(seq[:], 12)
	wf.Close()
	f.sync()
	if f.d.durableAt.Before(committed) {
		t.Fatal("not durable after a complete sync")
	}
	f.checkRestore()
}

// downStore is a Storage that fails every call while down is set, like an
// unreachable target.
type downStore struct {
	Storage
	down atomic.Bool
}

var errTargetDown = errors.New("target unreachable")

func (s *downStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if s.down.Load() {
		return errTargetDown
	}
	return s.Storage.Put(ctx, key, r, size, meta)
}

func (s *downStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.down.Load() {
		return nil, errTargetDown
	}
	return s.Storage.Get(ctx, key, off, n)
}

func (s *downStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	if s.down.Load() {
		return ObjectInfo{}, errTargetDown
	}
	return s.Storage.Head(ctx, key)
}

func (s *downStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	if s.down.Load() {
		return func(yield func(ObjectInfo, error) bool) { yield(ObjectInfo{}, errTargetDown) }
	}
	return s.Storage.List(ctx, prefix, startAfter)
}

// TestWatchDirTargetDown: a database created under a WatchDir root while
// the target is unreachable is replicated once the target is back. Before,
// the watcher read the target while adding (network I/O on the inotify
// goroutine), dropped the database on the error and never looked at it
// again.
func TestWatchDirTargetDown(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	runSQLite(t, filepath.Join(dir, "first.db"), "PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
	mem := memstore.New()
	store := &downStore{Storage: mem}
	log := &logBuffer{}
	r := New(store, Options{SyncInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err := r.WatchDir(ctx, dir, "*.db"); err != nil {
		t.Fatalf("WatchDir: %v", err)
	}
	stop := runReplicator(t, r)
	defer stop()
	store.down.Store(true)
	runSQLite(t, filepath.Join(dir, "new.db"), "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
	// Wait (bounded) for the watcher to see it; then the target comes back.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(r.DBs()) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	store.down.Store(false)
	if err := r.Sync(ctx); err != nil {
		t.Fatalf("Sync after the target came back: %v", err)
	}
	if keys := mem.Keys("new.db/"); len(keys) == 0 {
		t.Fatalf("new.db is not in the target (keys %v); log:\n%s", mem.Keys(""), log)
	}
	if keys := mem.Keys("first.db/"); len(keys) == 0 {
		t.Fatalf("first.db is not in the target")
	}
}

// TestWatchDirOddName: a file whose name the target cannot hold is reported
// and skipped; it does not stop WatchDir or the other databases. Before,
// one such file failed the whole WatchDir at start.
func TestWatchDirOddName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	runSQLite(t, filepath.Join(dir, `odd\name.db`), "PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
	runSQLite(t, filepath.Join(dir, "good.db"), "PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
	mem := memstore.New()
	log := &logBuffer{}
	r := New(mem, Options{SyncInterval: SyncImmediately, Logger: slog.New(slog.NewTextHandler(log, nil))})
	defer r.Close()
	if err := r.WatchDir(ctx, dir, "*.db"); err != nil {
		t.Fatalf("WatchDir: %v", err)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := mem.Keys("good.db/"); len(keys) == 0 {
		t.Fatalf("good.db is not in the target (keys %v)", mem.Keys(""))
	}
	if !strings.Contains(log.String(), `odd\\name.db`) || !strings.Contains(log.String(), "level=WARN") {
		t.Errorf("the odd file is not reported at WARN; log:\n%s", log)
	}
}

// TestAppStoppedWALEmptyIndexReset: once the application stopped, whoever
// sees its WAL empty may put another database file at the path (README).
// The WAL-index must then already be marked for rebuilding: it still
// records the old file's size and page size, and a new file of another
// page size was read through it as malformed (the model test's
// writer-error, seed 489863618). Before, the index was reset only after
// the TRUNCATE checkpoint had emptied the WAL, leaving that window.
func TestAppStoppedWALEmptyIndexReset(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately, CheckpointFrames: 1 << 20})
	f.write(5)
	f.sync()
	f.closeApp()
	if err := f.d.mu.lock(f.ctx); err != nil {
		t.Fatal(err)
	}
	defer f.d.mu.unlock()
	if f.d.st == stateFollowing {
		if err := f.d.passiveCheckpoint(f.ctx); err != nil {
			t.Fatal(err)
		}
		if handed, err := f.d.handOver(evAppClosed); err != nil || !handed {
			t.Fatalf("hand-over: %v, %v", handed, err)
		}
	}
	if err := f.d.truncateWAL(f.ctx, true); err != nil {
		t.Fatal(err)
	}
	if size := f.walSize(); size != 0 {
		t.Fatalf("WAL holds %d bytes after the TRUNCATE checkpoint", size)
	}
	shm, err := os.ReadFile(f.path + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	if shm[12] != 0 || shm[48+12] != 0 {
		t.Fatal("the WAL is empty but the WAL-index is still initialised: a file put at the path now is read with the old size and page size")
	}
}

// TestAppStoppedTruncateRetried: if emptying a stopped application's WAL
// fails once (a checkpoint busy for a moment), walsync tries again at its
// next interval; nothing else would wake the database up. Before, the WAL
// kept its frames until the application came back (the model test's
// app-stop failure, seed 157059131, after a rolled-back spill).
func TestAppStoppedTruncateRetried(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: 20 * time.Millisecond, CheckpointFrames: 1 << 20})
	var fails atomic.Int32
	fails.Store(5) // more than the events the stop itself raises
	f.r.testHooks.beforeTruncate = func() error {
		if fails.Add(-1) >= 0 {
			return errors.New("checkpoint busy (injected)")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- f.r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	f.write(5)
	f.closeApp()
	deadline := time.Now().Add(20 * time.Second)
	for f.walSize() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stopped application's WAL still holds %d bytes after a failed truncate (injected failures left: %d)", f.walSize(), fails.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fails.Load() >= 0 {
		t.Fatal("the injected failure was never hit")
	}
}

// TestAppStoppedRolledBackSpill: a transaction that spilled into a fresh
// WAL and rolled back leaves only uncommitted frames; once the application
// stopped, walsync empties that WAL as SQLite's last close would have
// deleted it. Before, they stayed (5.7 MB in the model test's app-stop
// failure, seed 157059131), and a file put at the path would have had them
// read over it.
func TestAppStoppedRolledBackSpill(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately, CheckpointFrames: 1 << 20})
	f.write(5)
	f.sync()
	f.closeApp()
	f.sync() // the application stopped: its WAL is emptied, the database Closed
	if size := f.walSize(); size != 0 {
		t.Fatalf("WAL holds %d bytes after the application stopped", size)
	}
	runSQLite(t, f.path, "PRAGMA cache_size=5;\nBEGIN;\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300) INSERT INTO t SELECT i, randomblob(3000) FROM c;\nROLLBACK;\n")
	if size := f.walSize(); size == 0 {
		t.Fatal("the rolled-back transaction did not spill into the WAL")
	}
	f.sync()
	if size := f.walSize(); size != 0 {
		t.Fatalf("WAL holds %d bytes of a rolled-back spill after the application stopped (state %s)", size, f.d.st)
	}
	f.write(3) // the chain goes on
	f.sync()
	f.checkRestore()
	if got := f.snapshots(); len(got) != 1 {
		t.Fatalf("snapshots: %q, want only the first", got)
	}
}
