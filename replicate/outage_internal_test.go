package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/internal/wal"
)

// newOutageFixture is newFixture writing through a downStore.
func newOutageFixture(t *testing.T, opts Options) (*fixture, *downStore) {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), store: memstore.New(), log: &logBuffer{}}
	ds := &downStore{}
	f.wrap = func(s Storage) Storage { ds.Storage = s; return ds }
	f.path = filepath.Join(f.dir, "db.sqlite")
	runSQLite(t, f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
	f.openApp()
	f.start(opts)
	return f, ds
}

// writeRound commits 30 rows of 3000 bytes (about 30 frames) from another
// process and lets the application checkpoint passively, as its
// auto-checkpoint would.
func (f *fixture) writeRound(round int) {
	f.t.Helper()
	runSQLite(f.t, f.path, fmt.Sprintf("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 30) INSERT INTO t SELECT %d*100+i, randomblob(3000) FROM c;", round))
	if err := f.app.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) walSize() int64 {
	fi, err := os.Stat(f.path + "-wal")
	if err != nil {
		return 0
	}
	return fi.Size()
}

// syncOffline runs a sync that must report the outage.
func (f *fixture) syncOffline() {
	f.t.Helper()
	err := f.r.Sync(f.ctx)
	var off *offlineError
	if !errors.As(err, &off) || !errors.Is(err, errTargetDown) {
		f.t.Fatalf("sync during the outage: %v, want the outage reported\n%s", err, f.log)
	}
}

// TestOutageWALBounded: while the target is down, walsync keeps capturing
// into its local spool and hands the WAL over as usual, so the
// application's WAL stays as bounded as without walsync; when the target
// is back the spool drains in TXID order and the chain goes on without a
// snapshot. Before, walsync held the WAL until everything was uploaded: it
// grew by every round written during the outage.
func TestOutageWALBounded(t *testing.T) {
	f, ds := newOutageFixture(t, Options{SyncInterval: SyncImmediately, CheckpointFrames: 20})
	f.write(3)
	f.sync()
	snaps := len(f.snapshots())

	ds.down.Store(true)
	down := time.Now()
	frame := int64(4096 + wal.FrameHeaderSize)
	var sizes []int64
	for round := range 10 {
		f.writeRound(round)
		f.syncOffline() // captures, spools, hands over
		f.syncOffline() // (the hand-over needs a sync with nothing pending)
		sizes = append(sizes, f.walSize())
	}
	if last, limit := sizes[len(sizes)-1], 3*40*frame; last > limit {
		t.Fatalf("WAL grew to %d bytes over 10 rounds of an outage (sizes %v), want at most %d", last, sizes, limit)
	}
	st := f.r.Stats()
	if st.Spooled == 0 || st.SpoolBytes == 0 {
		t.Fatalf("stats during the outage: %+v, want segments spooled", st)
	}
	if !strings.Contains(f.log.String(), "target not reachable; spooling changes locally") {
		t.Fatalf("the outage was not logged:\n%s", f.log)
	}
	// Spooled is not durable: WaitDurable must not return for commits made
	// during the outage.
	if f.d.durableAt.After(down) {
		t.Fatalf("durable up to %v during the outage that began at %v", f.d.durableAt, down)
	}

	ds.down.Store(false)
	f.sync()
	if !f.d.durableAt.After(down) {
		t.Fatalf("not durable after the outage: durable up to %v", f.d.durableAt)
	}
	if st := f.r.Stats(); st.SpoolBytes != 0 || st.SpoolOverflows != 0 {
		t.Fatalf("stats after the outage: %+v, want the spool drained, no overflow", st)
	}
	if got := len(f.snapshots()); got != snaps {
		t.Fatalf("snapshots after the outage: %v, want none since the first %d", f.snapshots(), snaps)
	}
	f.checkRestore()
}

// TestOutageSpoolOverflow: an outage longer than the spool budget releases
// the WAL (the application's own checkpoints then restart it), says so at
// ERROR, and re-establishes the chain with a snapshot once the target is
// back; the restore equals the source.
func TestOutageSpoolOverflow(t *testing.T) {
	f, ds := newOutageFixture(t, Options{SyncInterval: SyncImmediately, CheckpointFrames: 1 << 20, SpoolMax: 200 << 10})
	f.write(3)
	f.sync()

	ds.down.Store(true)
	for round := range 6 { // about 560 KiB of pages: past the budget
		f.writeRound(round)
		f.syncOffline()
	}
	st := f.r.Stats()
	if st.SpoolOverflows == 0 {
		t.Fatalf("stats: %+v, want a spool overflow", st)
	}
	if !strings.Contains(f.log.String(), "level=ERROR msg=\"cannot keep the changes the target did not take") {
		t.Fatalf("the overflow was not logged at ERROR:\n%s", f.log)
	}
	// The WAL is the application's again: its checkpoint restarts it.
	if err := f.app.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	if size := f.walSize(); size != 0 {
		t.Fatalf("WAL holds %d bytes after the application's TRUNCATE checkpoint, want 0 (still pinned)", size)
	}
	f.writeRound(7)
	f.syncOffline()

	ds.down.Store(false)
	if err := f.r.Sync(f.ctx); err != nil {
		t.Fatalf("%v\n%s", err, f.log)
	}
	f.wantSnapshot("spool overflow")
	f.checkRestore()
}

// refuseStore refuses every Put for good while refuse is set, as a target
// that denies write access does.
type refuseStore struct {
	Storage
	refuse atomic.Bool
}

func (s *refuseStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if s.refuse.Load() {
		return fmt.Errorf("put %s: access denied (%w)", key, ErrRefused)
	}
	return s.Storage.Put(ctx, key, r, size, meta)
}

// TestTargetRefuses: a target that refuses uploads for good (here, access
// denied) is not waited for: what is captured is dropped at once instead of
// filling the spool, the WAL is released (the application's checkpoint
// restarts it), the refusal is logged at ERROR and counted, and once the
// target takes uploads again a snapshot restarts the chain.
func TestTargetRefuses(t *testing.T) {
	f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), store: memstore.New(), log: &logBuffer{}}
	rs := &refuseStore{}
	f.wrap = func(s Storage) Storage { rs.Storage = s; return rs }
	f.path = filepath.Join(f.dir, "db.sqlite")
	runSQLite(t, f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
	f.openApp()
	opts := Options{SyncInterval: SyncImmediately, CheckpointFrames: 1 << 20}
	f.start(opts)
	f.write(3)
	f.sync()

	rs.refuse.Store(true)
	f.writeRound(1)
	err := f.r.Sync(f.ctx)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("sync while the target refuses: %v, want the refusal", err)
	}
	if st := f.r.Stats(); st.Refusals != 1 || st.SpoolBytes != 0 || st.Spooled != 0 {
		t.Fatalf("stats: %+v, want one refusal and nothing spooled", st)
	}
	if !strings.Contains(f.log.String(), `level=ERROR msg="the target refuses this database's uploads`) {
		t.Fatalf("the refusal was not logged at ERROR:\n%s", f.log)
	}
	if err := f.app.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	if size := f.walSize(); size != 0 {
		t.Fatalf("WAL holds %d bytes after the application's TRUNCATE checkpoint, want 0 (still pinned)", size)
	}
	f.writeRound(2)
	if err := f.r.Sync(f.ctx); err == nil {
		t.Fatal("sync succeeded while the target refuses")
	}

	rs.refuse.Store(false)
	f.sync()
	f.wantSnapshot("target refused the upload")
	f.checkRestore()
}

// TestStartDuringOutage: a database added while the target is unreachable
// (walsync started, or restarted, during an outage) does not keep the
// application's WAL pinned until the target answers: the application's
// TRUNCATE checkpoint empties it. When the target is back, the resume
// cannot prove the chain and takes a snapshot; the restore equals the
// source. Before, the database stayed pinned in state New for the whole
// outage and the WAL grew without bound.
func TestStartDuringOutage(t *testing.T) {
	f, ds := newOutageFixture(t, Options{SyncInterval: SyncImmediately})
	f.write(3)
	f.sync()
	f.writeRound(1)
	if err := f.r.Close(); err != nil {
		t.Fatal(err)
	}

	ds.down.Store(true)
	r := New(ds, Options{SyncInterval: SyncImmediately, Logger: f.logger()})
	t.Cleanup(func() { r.Close() })
	d, err := r.Add(f.ctx, f.path, "db")
	if err != nil {
		t.Fatal(err)
	}
	f.r, f.d = r, d
	if err := r.Sync(f.ctx); err == nil {
		t.Fatal("sync succeeded with the target down")
	}
	f.writeRound(2)
	if err := f.app.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	if size := f.walSize(); size != 0 {
		t.Fatalf("WAL holds %d bytes after the application's TRUNCATE checkpoint, want 0 (pinned while the target is down)", size)
	}
	f.writeRound(3)

	ds.down.Store(false)
	f.sync()
	f.wantSnapshot("WAL changed while walsync was not running")
	f.checkRestore()
}

// noDeleteStore fails every Delete, so that a Replicator cannot release its
// leases (as when its release times out).
type noDeleteStore struct{ Storage }

func (s noDeleteStore) Delete(ctx context.Context, keys ...string) error {
	return errors.New("delete refused")
}

// TestLeaseAfterInProcessRestart: an application that closes its
// Replicator without the lease being released (the release timed out, as
// the model test's abrupt restart does with ShutdownTimeout 1 ms) and
// creates a new one in the same process takes the lease at once. Before,
// the new Replicator saw a live holder (this very process) and refused the
// database until the lease expired: nothing was replicated for 10 minutes
// (the model test's stuck lag, seed 140426943).
func TestLeaseAfterInProcessRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.sqlite")
	runSQLite(t, path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
	store := noDeleteStore{memstore.New()}
	ctx := context.Background()
	r1 := New(store, Options{SyncInterval: SyncImmediately})
	if _, err := r1.Add(ctx, path, "db"); err != nil {
		t.Fatal(err)
	}
	if err := r1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r1.Close() // the release fails

	r2 := New(store, Options{SyncInterval: SyncImmediately})
	defer r2.Close()
	if _, err := r2.Add(ctx, path, "db"); err != nil {
		t.Fatalf("a new Replicator of the same process after the first closed: %v", err)
	}
	// While the second is open, a third of the same process is refused.
	r3 := New(store, Options{SyncInterval: SyncImmediately})
	defer r3.Close()
	var le *LeaseError
	if _, err := r3.Add(ctx, path, "db"); !errors.As(err, &le) {
		t.Fatalf("a third Replicator while the second is open: %v, want a LeaseError", err)
	}
}
