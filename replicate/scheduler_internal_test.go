package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/walsync/walsync/internal/memstore"
)

// runReplicator starts r.Run and returns a func that stops it and returns
// Run's result.
func runReplicator(t *testing.T, r *Replicator) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	var wg sync.WaitGroup
	wg.Go(func() { err = r.Run(ctx) })
	// Sync goes through the scheduler only once it runs.
	for !r.sched.running() {
		time.Sleep(time.Millisecond)
	}
	return func() error { cancel(); wg.Wait(); return err }
}

func TestSchedulerRun(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	r := New(store, Options{SyncInterval: 20 * time.Millisecond, Concurrency: 2})
	dir := t.TempDir()
	var paths []string
	for i := range 5 {
		p := filepath.Join(dir, fmt.Sprintf("%d.db", i))
		runSQLite(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
		if _, err := r.Add(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	stop := runReplicator(t, r)
	for round := range 3 {
		for _, p := range paths {
			runSQLite(t, p, fmt.Sprintf("INSERT INTO t VALUES (%d);", round))
		}
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		// Everything committed before Sync is in the target now.
		for _, p := range paths {
			name, _ := NameFromPath(p)
			out := filepath.Join(t.TempDir(), "out.db")
			if _, err := Restore(ctx, store, name, out, RestoreOptions{Check: IntegrityNone}); err != nil {
				t.Fatal(err)
			}
			if got, want := runSQLite(t, out, "SELECT count(*) FROM t;"), fmt.Sprintf("%d\n", round+1); got != want {
				t.Fatalf("round %d %s: rows %q, want %q", round, name, got, want)
			}
		}
	}
	// A deleted database waits for a file at its path again (Gone);
	// everything it committed was uploaded, so Sync succeeds, and the
	// others go on.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(paths[0] + suffix)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatalf("Sync after delete: err = %v, want nil", err)
	}
	if got, want := len(r.DBs()), 5; got != want {
		t.Fatalf("databases after delete = %d, want %d", got, want)
	}
	runSQLite(t, paths[1], "INSERT INTO t VALUES (9);")
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestIdleDatabasesCostNothing: databases nobody writes to cause no
// upload and no LIST after the first sync.
func TestIdleDatabasesCostNothing(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	r := New(store, Options{SyncInterval: 10 * time.Millisecond})
	dir := t.TempDir()
	for i := range 10 {
		p := filepath.Join(dir, fmt.Sprintf("%d.db", i))
		runSQLite(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
		if _, err := r.Add(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	stop := runReplicator(t, r)
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Events caused by the first sync itself (WAL-index files created) may
	// still be queued; they must die out, not feed themselves.
	quiescent := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r.sched.mu.Lock()
			busy := len(r.sched.waiting)
			r.sched.mu.Unlock()
			for _, d := range r.DBs() {
				if r.sched.busy(d) {
					busy++
				}
			}
			if busy == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d databases still scheduled while idle", busy)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	quiescent()
	puts, lists := store.Puts(), store.Lists()
	// A sync of an idle database reads its WAL header and finds nothing:
	// no request to the target.
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	quiescent()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := store.Puts(); got != puts {
		t.Fatalf("puts while idle: %d", got-puts)
	}
	if got := store.Lists(); got != lists {
		t.Fatalf("lists while idle: %d", got-lists)
	}
}

// TestPinBudget: with room for two pins, six databases are all replicated
// exactly; the others are watched unpinned and pinned again when written,
// and the number of pins stays within the budget once syncs settle.
func TestPinBudget(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	r := New(store, Options{SyncInterval: SyncImmediately, MaxPinned: 2})
	dir := t.TempDir()
	var paths []string
	for i := range 6 {
		p := filepath.Join(dir, fmt.Sprintf("%d.db", i))
		runSQLite(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
		if _, err := r.Add(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if got := r.pinned.Load(); got > 2 {
		t.Fatalf("%d pinned after Add, budget 2", got)
	}
	stop := runReplicator(t, r)
	for round := range 4 {
		for i, p := range paths {
			runSQLite(t, p, fmt.Sprintf("INSERT INTO t VALUES (%d, randomblob(%d)); PRAGMA busy_timeout=20; PRAGMA wal_checkpoint(TRUNCATE);", round, 100*i+50))
		}
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		name, _ := NameFromPath(p)
		out := filepath.Join(t.TempDir(), "out.db")
		if _, err := Restore(ctx, store, name, out, RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, want := runSQLite(t, out, ".dump"), runSQLite(t, p, ".dump"); got != want {
			t.Fatalf("%s: restore differs from the source", name)
		}
	}
}

// putHookStore runs hook (once armed) inside a Put, while the sync that
// called it is uploading.
type putHookStore struct {
	*memstore.Store
	mu   sync.Mutex
	hook func()
}

func (s *putHookStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	s.mu.Lock()
	hook := s.hook
	s.hook = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s.Store.Put(ctx, key, r, size, meta)
}

// TestOneSegmentPerSync: a transaction committed while a sync uploads its
// segment goes into the next sync, not into a second segment of the same
// one (a busy database costs one segment per sync interval).
func TestOneSegmentPerSync(t *testing.T) {
	ctx := context.Background()
	store := &putHookStore{Store: memstore.New()}
	r := New(store, Options{SyncInterval: time.Hour})
	p := filepath.Join(t.TempDir(), "busy.db")
	app, err := sqlite3.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER)"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(ctx, p, ""); err != nil {
		t.Fatal(err)
	}
	stop := runReplicator(t, r)
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := r.Stats().Segments
	if err := app.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var hookErr error
	store.mu.Lock()
	store.hook = func() { hookErr = app.Exec("INSERT INTO t VALUES (2)") }
	store.mu.Unlock()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if got := r.Stats().Segments - before; got != 1 {
		t.Fatalf("one sync uploaded %d segments, want 1", got)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Segments - before; got != 2 {
		t.Fatalf("two syncs uploaded %d segments, want 2", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	name, _ := NameFromPath(p)
	if _, err := Restore(ctx, store, name, out, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := runSQLite(t, out, "SELECT group_concat(n) FROM t;"); got != "1,2\n" {
		t.Fatalf("restored rows %q, want 1,2", got)
	}
}

// TestPinBudgetIdleSync: a Sync of many idle, unpinned databases (start-up,
// shutdown) pins none of them beyond the budget: each sync would otherwise
// pin its database while the others wait, and run out of descriptors.
func TestPinBudgetIdleSync(t *testing.T) {
	ctx := context.Background()
	r := New(memstore.New(), Options{SyncInterval: SyncImmediately, MaxPinned: 2})
	dir := t.TempDir()
	for i := range 6 {
		p := filepath.Join(dir, fmt.Sprintf("%d.db", i))
		runSQLite(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
		if _, err := r.Add(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	stop := runReplicator(t, r)
	for range 3 {
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().PinnedPeak; got > 2 {
		t.Fatalf("%d databases pinned at once, budget 2", got)
	}
}

// TestNotifyWALUrgent: a VFS that reports MaxSegmentBytes (here a
// megabyte) of new WAL gets its database synced at once, not at the end of
// a one-hour interval; a small write waits for the interval.
func TestNotifyWALUrgent(t *testing.T) {
	ctx := context.Background()
	r := New(memstore.New(), Options{SyncInterval: time.Hour, MaxSegmentBytes: 1 << 20})
	p := filepath.Join(t.TempDir(), "big.db")
	app, err := sqlite3.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(v BLOB)"); err != nil {
		t.Fatal(err)
	}
	d, err := r.Add(ctx, p, "")
	if err != nil {
		t.Fatal(err)
	}
	stop := runReplicator(t, r)
	defer stop()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	walSize := func() int64 {
		fi, err := os.Stat(p + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if err := app.Exec("INSERT INTO t VALUES (randomblob(1000))"); err != nil {
		t.Fatal(err)
	}
	d.committed(walSize())
	r.sched.mu.Lock()
	due := d.sched.due
	r.sched.mu.Unlock()
	if time.Until(due) < 30*time.Minute {
		t.Fatalf("a small write is due in %v, want the interval", time.Until(due))
	}
	if err := app.Exec("INSERT INTO t VALUES (randomblob(1100000))"); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	d.committed(walSize())
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.WaitDurable(wctx, committed); err != nil {
		t.Fatalf("a megabyte written is not synced at once: %v", err)
	}
}

// TestBackoffSurvivesNotify: after a failed sync, commits do not bring the
// retry before its backoff (found by ncruces' peer suites through the VFS:
// a database walsync cannot snapshot was retried at every commit, ~190
// times in 28 s); a success clears the backoff.
func TestBackoffSurvivesNotify(t *testing.T) {
	r := New(memstore.New(), Options{SyncInterval: SyncImmediately})
	d := newDB(r, filepath.Join(t.TempDir(), "x.db"), "x.db")
	d.sched.running = true
	before := time.Now()
	r.sched.done(d, errors.New("target unreachable"))
	if got, want := d.sched.due, before.Add(time.Second); got.Before(want) {
		t.Fatalf("due after failure = %v, want >= %v", got, want)
	}
	due := d.sched.due
	r.sched.notify(d)
	r.sched.notifyNow(d)
	if got := d.sched.due; !got.Equal(due) {
		t.Errorf("due after notify = %v, want the backoff's %v", got, due)
	}
	d.sched.waiting, d.sched.running = false, true
	r.sched.done(d, nil)
	if !d.sched.retry.IsZero() {
		t.Errorf("retry = %v after a success, want zero", d.sched.retry)
	}
}
