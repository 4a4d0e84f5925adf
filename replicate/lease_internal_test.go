package replicate

import (
	"context"
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

	"github.com/walsync/walsync/internal/memstore"
)

// fakeClock is the fences' clock in these tests: time moves only when a
// test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingStore counts every request to the Storage it wraps.
type countingStore struct {
	Storage
	n atomic.Int64
}

func (s *countingStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	s.n.Add(1)
	return s.Storage.Put(ctx, key, r, size, meta)
}

func (s *countingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.n.Add(1)
	return s.Storage.Get(ctx, key, off, n)
}

func (s *countingStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	s.n.Add(1)
	return s.Storage.Head(ctx, key)
}

func (s *countingStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	s.n.Add(1)
	return s.Storage.List(ctx, prefix, startAfter)
}

func (s *countingStore) Delete(ctx context.Context, keys ...string) error {
	s.n.Add(1)
	return s.Storage.Delete(ctx, keys...)
}

// leaseEnv is one target shared by several replicators, each a "process"
// with its own database file under the same name, and one clock.
type leaseEnv struct {
	t     *testing.T
	store *memstore.Store
	clock *fakeClock
	dir   string
}

func newLeaseEnv(t *testing.T) *leaseEnv {
	return &leaseEnv{t: t, store: memstore.New(), clock: &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, dir: t.TempDir()}
}

const testTTL = 10 * time.Minute

// replicator returns a Replicator on the shared target whose fence uses
// the shared clock, and its log.
func (e *leaseEnv) replicator(opts Options) (*Replicator, *logBuffer) {
	logs := &logBuffer{}
	opts.LeaseTTL = testTTL
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r := New(e.store, opts)
	r.fence.now = e.clock.Now
	e.t.Cleanup(func() { r.Close() })
	return r, logs
}

// db creates a WAL database file for one process.
func (e *leaseEnv) db(file string) string {
	p := filepath.Join(e.dir, file)
	runSQLite(e.t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
	return p
}

func TestLeaseSecondWriterRefused(t *testing.T) {
	ctx := context.Background()
	e := newLeaseEnv(t)
	r1, _ := e.replicator(Options{})
	if _, err := r1.Add(ctx, e.db("one.db"), "app.db"); err != nil {
		t.Fatal(err)
	}
	r2, _ := e.replicator(Options{})
	p2 := e.db("two.db")
	_, err := r2.Add(ctx, p2, "app.db")
	var le *LeaseError
	if !errors.Is(err, ErrLeased) || !errors.As(err, &le) {
		t.Fatalf("second Add err=%v, want a LeaseError matching ErrLeased", err)
	}
	host, _ := os.Hostname()
	msg := err.Error()
	for _, want := range []string{"add ", `"app.db"`, "host " + host, fmt.Sprintf("pid %d", os.Getpid()), r1.fence.self.Instance, "expires at"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("err=%q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Fatalf("err=%q is not one line", msg)
	}
	if got := len(r2.DBs()); got != 0 {
		t.Fatalf("refused database is replicated: %d databases", got)
	}
	// A graceful stop releases the lease: the next process takes it at
	// once, without waiting for the expiry.
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if keys := e.store.Keys(leasePrefix("app.db")); len(keys) != 0 {
		t.Fatalf("lease objects after Close: %q", keys)
	}
	if _, err := r2.Add(ctx, p2, "app.db"); err != nil {
		t.Fatalf("Add after the holder stopped: %v", err)
	}
}

// TestLeaseExpiryTakeover: a holder that does not renew (idle, or paused
// with SIGSTOP) past the expiry loses the database to another process, and
// notices before its next upload: it uploads nothing more, says so at
// ERROR, and stops replicating the database.
func TestLeaseExpiryTakeover(t *testing.T) {
	ctx := context.Background()
	e := newLeaseEnv(t)
	r1, logs1 := e.replicator(Options{})
	p1 := e.db("one.db")
	if _, err := r1.Add(ctx, p1, "app.db"); err != nil {
		t.Fatal(err)
	}
	runSQLite(t, p1, "INSERT INTO t VALUES (1);")
	if err := r1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r2, _ := e.replicator(Options{})
	p2 := e.db("two.db")
	e.clock.Advance(testTTL - time.Second)
	if _, err := r2.Add(ctx, p2, "app.db"); !errors.Is(err, ErrLeased) {
		t.Fatalf("Add a second before the expiry: err=%v, want ErrLeased", err)
	}
	e.clock.Advance(time.Second)
	if _, err := r2.Add(ctx, p2, "app.db"); err != nil {
		t.Fatalf("Add at the expiry: %v", err)
	}
	before := e.store.Keys("app.db/")
	runSQLite(t, p1, "INSERT INTO t VALUES (2);")
	err := r1.Sync(ctx)
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Sync of the old holder: err=%v, want ErrLeaseLost", err)
	}
	if !strings.Contains(err.Error(), r2.fence.self.Instance) {
		t.Fatalf("err=%q does not name the new holder", err)
	}
	if got := e.store.Keys("app.db/"); len(got) != len(before) {
		t.Fatalf("the old holder uploaded after losing the lease: %q, before %q", got, before)
	}
	r1.fence.lostWG.Wait()
	if got := len(r1.DBs()); got != 0 {
		t.Fatalf("old holder still replicates %d databases", got)
	}
	if log := logs1.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, r2.fence.self.Instance) {
		t.Fatalf("no ERROR naming the new holder in the log:\n%s", log)
	}
	// The new holder replicates, from where the target is.
	runSQLite(t, p2, "INSERT INTO t VALUES (3);")
	if err := r2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseRenewal: uploads renew the lease once half its TTL has passed,
// so a busy holder keeps it past the first expiry; the superseded
// generation is deleted.
func TestLeaseRenewal(t *testing.T) {
	ctx := context.Background()
	e := newLeaseEnv(t)
	r1, _ := e.replicator(Options{})
	p1 := e.db("one.db")
	if _, err := r1.Add(ctx, p1, "app.db"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testTTL / 4)
	runSQLite(t, p1, "INSERT INTO t VALUES (1);")
	if err := r1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(e.store.Keys(leasePrefix("app.db"))), fmt.Sprintf("[%s]", leaseKey("app.db", 1)); got != want {
		t.Fatalf("lease before half the TTL: %s, want %s (no renewal)", got, want)
	}
	e.clock.Advance(testTTL / 2)
	runSQLite(t, p1, "INSERT INTO t VALUES (2);")
	if err := r1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(e.store.Keys(leasePrefix("app.db"))), fmt.Sprintf("[%s]", leaseKey("app.db", 2)); got != want {
		t.Fatalf("lease after an upload past half the TTL: %s, want %s", got, want)
	}
	e.clock.Advance(testTTL / 2) // past the first expiry, not the renewed one
	r2, _ := e.replicator(Options{})
	if _, err := r2.Add(ctx, e.db("two.db"), "app.db"); !errors.Is(err, ErrLeased) {
		t.Fatalf("Add while the renewed lease holds: err=%v, want ErrLeased", err)
	}
}

// TestLeaseTakeoverOption: Options.Takeover takes a live lease; the old
// holder loses it at its next renewal and uploads nothing more.
func TestLeaseTakeoverOption(t *testing.T) {
	ctx := context.Background()
	e := newLeaseEnv(t)
	r1, _ := e.replicator(Options{})
	p1 := e.db("one.db")
	if _, err := r1.Add(ctx, p1, "app.db"); err != nil {
		t.Fatal(err)
	}
	r2, _ := e.replicator(Options{Takeover: true})
	if _, err := r2.Add(ctx, e.db("two.db"), "app.db"); err != nil {
		t.Fatalf("Add with Takeover: %v", err)
	}
	e.clock.Advance(testTTL / 2)
	before := e.store.Keys("app.db/")
	runSQLite(t, p1, "INSERT INTO t VALUES (1);")
	if err := r1.Sync(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Sync of the old holder at its renewal: err=%v, want ErrLeaseLost", err)
	}
	if got := e.store.Keys("app.db/"); len(got) != len(before) {
		t.Fatalf("the old holder uploaded after losing the lease: %q", got)
	}
}

// TestLeaseGoneProcess: a lease held by a process of this host that is
// gone (killed: its PID free, or taken by a later process) is taken at
// once; one of another host is waited for.
func TestLeaseGoneProcess(t *testing.T) {
	ctx := context.Background()
	e := newLeaseEnv(t)
	r, _ := e.replicator(Options{})
	self := r.fence.self
	if self.Boot == "" || self.PIDNS == "" || self.ProcStart == 0 {
		t.Fatalf("no process identity from /proc: %+v", self)
	}
	write := func(name string, h LeaseHolder) {
		t.Helper()
		if err := r.fence.create(ctx, name, 1, leaseRecord{LeaseHolder: h, Expires: e.clock.Now().Add(testTTL)}); err != nil {
			t.Fatal(err)
		}
	}
	gone := self
	gone.Instance, gone.ProcStart = "0123456789abcdef", self.ProcStart+1 // this PID, another start
	write("gone.db", gone)
	if _, err := r.Add(ctx, e.db("gone.db"), "gone.db"); err != nil {
		t.Fatalf("Add over the lease of a process that is gone: %v", err)
	}
	other := gone
	other.Boot = "another-host-boot-id"
	write("other.db", other)
	if _, err := r.Add(ctx, e.db("other.db"), "other.db"); !errors.Is(err, ErrLeased) {
		t.Fatalf("Add over the lease of another host's process: err=%v, want ErrLeased", err)
	}
}

// TestLeaseRace: processes taking the same free lease at the same moment:
// exactly one gets it, every time.
func TestLeaseRace(t *testing.T) {
	store := memstore.New()
	for round := range 50 {
		name := fmt.Sprintf("race%d.db", round)
		const n = 4
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			f := newFence(store, testTTL, false, slog.New(slog.DiscardHandler))
			wg.Go(func() { errs[i] = f.acquire(context.Background(), name) })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrLeased):
				t.Fatalf("acquire: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d processes got the lease, want 1 (%v)", round, won, errs)
		}
	}
}

// TestLeaseIdleCostsNothing: 20 idle databases make no request for the
// lease (nor anything else) over three TTLs.
func TestLeaseIdleCostsNothing(t *testing.T) {
	ctx := context.Background()
	e := newLeaseEnv(t)
	store := &countingStore{Storage: e.store}
	r := New(store, Options{LeaseTTL: testTTL})
	r.fence.now = e.clock.Now
	t.Cleanup(func() { r.Close() })
	for i := range 20 {
		if _, err := r.Add(ctx, e.db(fmt.Sprintf("%d.db", i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	start := store.n.Load()
	for range 6 {
		e.clock.Advance(testTTL / 2)
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := store.n.Load() - start; got != 0 {
		t.Fatalf("20 idle databases made %d requests over 3 TTLs, want 0", got)
	}
	// The first write after the lapse checks the lease is still ours (a
	// List and a Get), renews it (a Put and a Delete), then uploads.
	p := filepath.Join(e.dir, "0.db")
	runSQLite(t, p, "INSERT INTO t VALUES (1);")
	before := store.n.Load()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("first upload after the lapse: %d requests", store.n.Load()-before)
}
