package replicate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/internal/wal"
)

// logBuffer collects log records for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func runSQLite(t *testing.T, db, script string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-bail", db)
	cmd.Stdin = strings.NewReader(".timeout 2000\n" + script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v: %s", err, out)
	}
	return string(out)
}

func (f *fixture) sync() {
	f.t.Helper()
	if err := f.r.Sync(f.ctx); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) write(n int) {
	f.t.Helper()
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "INSERT INTO t VALUES (%d, randomblob(%d));\n", i, 100+i*37)
	}
	runSQLite(f.t, f.path, sb.String())
}

// checkRestore restores the newest state and compares it with the source.
func (f *fixture) checkRestore() {
	f.t.Helper()
	out := filepath.Join(f.t.TempDir(), "out.db")
	if _, err := Restore(f.ctx, f.store, "db", out, RestoreOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if got, want := runSQLite(f.t, out, ".dump"), runSQLite(f.t, f.path, ".dump"); got != want {
		f.t.Fatal("restored database differs from the source")
	}
}

// snapshots returns the reasons of the snapshots logged so far.
func (f *fixture) snapshots() []string {
	var out []string
	for line := range strings.SplitSeq(f.log.String(), "\n") {
		if strings.Contains(line, "msg=snapshot ") {
			_, r, _ := strings.Cut(line, "reason=")
			out = append(out, r)
		}
	}
	return out
}

func (f *fixture) wantSnapshot(reason string) {
	f.t.Helper()
	s := f.snapshots()
	if len(s) == 0 || !strings.Contains(s[len(s)-1], reason) {
		f.t.Fatalf("last snapshot reason: %q, want %q (all: %q)", s, reason, s)
	}
	if !strings.Contains(f.log.String(), "level=WARN") {
		f.t.Fatal("discontinuity not logged at WARN")
	}
}

func TestDiscontinuities(t *testing.T) {
	t.Run("WALRestartedByAnotherProcess", func(t *testing.T) {
		f := newFixture(t, Options{SyncInterval: SyncImmediately})
		f.write(5)
		f.sync()
		// Simulate a writer that ignores the pin: release the slot, let
		// the application checkpoint and restart the WAL, pin again.
		f.d.pin.unlockSlot()
		runSQLite(t, f.path, "INSERT INTO t VALUES (100, zeroblob(10)); PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t VALUES (101, zeroblob(10));")
		f.d.pin.lockSlot()
		f.sync()
		f.wantSnapshot("WAL restarted by another process")
		f.checkRestore()
	})
	t.Run("WALTruncatedByAnotherProcess", func(t *testing.T) {
		f := newFixture(t, Options{SyncInterval: SyncImmediately})
		f.write(5)
		f.sync()
		f.d.pin.unlockSlot()
		runSQLite(t, f.path, "INSERT INTO t VALUES (100, zeroblob(10)); PRAGMA wal_checkpoint(TRUNCATE);")
		f.d.pin.lockSlot()
		f.sync()
		f.wantSnapshot("WAL deleted, truncated or rewritten")
		f.checkRestore()
	})
	t.Run("DatabaseReplaced", func(t *testing.T) {
		f := newFixture(t, Options{SyncInterval: SyncImmediately})
		f.write(5)
		f.sync()
		other := filepath.Join(f.dir, "other.sqlite")
		runSQLite(t, other, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB); INSERT INTO t VALUES (42, x'00');")
		if err := os.Rename(other, f.path); err != nil {
			t.Fatal(err)
		}
		f.sync()
		f.wantSnapshot("database file replaced")
		f.checkRestore()
	})
	t.Run("DownWhileAppCheckpointed", func(t *testing.T) {
		f := newFixture(t, Options{SyncInterval: SyncImmediately})
		f.write(5)
		f.sync()
		f.r.Close()
		runSQLite(t, f.path, "INSERT INTO t VALUES (100, zeroblob(10)); PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t VALUES (101, zeroblob(10));")
		f.start(Options{SyncInterval: SyncImmediately})
		f.wantSnapshot("WAL changed while walsync was not running")
		f.checkRestore()
	})
	t.Run("NoDiscontinuityAcrossOwnCheckpoints", func(t *testing.T) {
		f := newFixture(t, Options{SyncInterval: SyncImmediately, CheckpointFrames: 5})
		for range 10 {
			f.write(4)
			f.sync()
		}
		if got := f.snapshots(); len(got) != 1 {
			t.Fatalf("snapshots %q, want only the first", got)
		}
		if f.r.Stats().Checkpoints == 0 {
			t.Fatal("no checkpoint ran")
		}
		fi, err := os.Stat(f.path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		// Restarted, not truncated: the file keeps its high-water mark, a
		// few times CheckpointFrames (the CLI writer never checkpoints, so
		// walsync copies frames itself at 4x).
		if max := int64(8*5*(4096+wal.FrameHeaderSize) + wal.HeaderSize); fi.Size() > max {
			t.Errorf("WAL is %d bytes after checkpoints, want at most %d", fi.Size(), max)
		}
		f.checkRestore()
	})
	t.Run("ScheduledSnapshot", func(t *testing.T) {
		f := newFixture(t, Options{SyncInterval: SyncImmediately, SnapshotInterval: 1})
		f.write(3)
		f.sync()
		if got := f.snapshots(); len(got) < 2 || !strings.Contains(got[len(got)-1], "scheduled") {
			t.Fatalf("snapshots %q, want a scheduled one", got)
		}
		f.write(3)
		f.sync()
		f.checkRestore()
	})
}

func TestDuplicateName(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a", "app.db"), filepath.Join(dir, "b", "app.db")
	for _, p := range []string{a, b} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		runSQLite(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
	}
	r := New(memstore.New(), Options{})
	defer r.Close()
	ctx := context.Background()
	if _, err := r.Add(ctx, a, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(ctx, b, "app"); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second database under one name: err = %v", err)
	}
	if _, err := r.Add(ctx, a, "other"); err == nil {
		t.Fatal("the same file added twice")
	}
	if _, err := r.Add(ctx, b, ""); err != nil {
		t.Fatalf("default names differ: %v", err)
	}
}

// TestLargeTransaction: a transaction of several MiB is spooled to a
// temporary file and restored intact; a small MaxSegmentBytes splits a
// backlog at transaction boundaries.
func TestLargeTransaction(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately, MaxSegmentBytes: 256 << 10, SpoolDir: t.TempDir()})
	runSQLite(t, f.path, "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 1500) INSERT INTO t SELECT i, randomblob(4000) FROM c; COMMIT;")
	f.write(50)
	before := f.r.Stats().Segments
	f.sync()
	if got := f.r.Stats().Segments - before; got < 2 {
		t.Fatalf("segments = %d, want the backlog split", got)
	}
	f.checkRestore()
	left, _ := filepath.Glob(filepath.Join(f.r.opts.SpoolDir, "*"))
	if len(left) != 0 {
		t.Fatalf("spool files left: %v", left)
	}
}

func TestDebugLarge(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately, MaxSegmentBytes: 256 << 10, SpoolDir: t.TempDir()})
	runSQLite(t, f.path, "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 1500) INSERT INTO t SELECT i, randomblob(4000) FROM c; COMMIT;")
	f.write(50)
	f.sync()
	t.Log(f.log.String())
}
