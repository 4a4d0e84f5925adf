package replicate_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/replicate"
)

// nextMilli waits until the wall clock has left the millisecond of t, the
// resolution of segment timestamps.
func nextMilli(t time.Time) {
	for time.Now().UnixMilli() <= t.UnixMilli() {
		runtime.Gosched()
	}
}

// TestPointInTime restores to timestamps between known commits against a
// real S3 server: each restore holds exactly the commits of the segments
// created at or before the timestamp (the sync boundary before it).
func TestPointInTime(t *testing.T) {
	ctx := context.Background()
	store := s3Store(t)
	db := filepath.Join(t.TempDir(), "pitr.db")
	sqlite(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
	r := replicate.New(store, replicate.Options{SyncInterval: replicate.SyncImmediately})
	defer r.Close()
	d, err := r.Add(ctx, db, "pitr")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	beforeAll := time.Now()
	nextMilli(beforeAll)

	// Commits 1..5, each synced: boundary i is the time after sync i.
	var bounds []time.Time
	var txids []ltx.TXID
	for i := 1; i <= 5; i++ {
		sqlite(t, db, fmt.Sprintf("INSERT INTO t VALUES (%d);", i))
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		b := time.Now()
		bounds, txids = append(bounds, b), append(txids, d.TXID())
		nextMilli(b)
	}
	// Commits 6 and 7 land in one segment: a time between them is not a
	// restore point; it restores the state before both.
	sqlite(t, db, "INSERT INTO t VALUES (6);")
	between := time.Now()
	nextMilli(between)
	sqlite(t, db, "INSERT INTO t VALUES (7);")
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	rows := func(ro replicate.RestoreOptions) string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out.db")
		if _, err := replicate.Restore(ctx, store, "pitr", out, ro); err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(sqlite(t, out, "SELECT n FROM t ORDER BY n;")), ",")
	}
	want := ""
	for i, b := range bounds {
		want = strings.TrimPrefix(want+","+fmt.Sprint(i+1), ",")
		if got := rows(replicate.RestoreOptions{Timestamp: b}); got != want {
			t.Errorf("timestamp after sync %d: rows %q, want %q", i+1, got, want)
		}
		if got := rows(replicate.RestoreOptions{TXID: txids[i]}); got != want {
			t.Errorf("txid %s: rows %q, want %q", txids[i], got, want)
		}
	}
	if got, want := rows(replicate.RestoreOptions{Timestamp: between}), "1,2,3,4,5"; got != want {
		t.Errorf("timestamp between two commits of one segment: rows %q, want %q", got, want)
	}
	if got, want := rows(replicate.RestoreOptions{}), "1,2,3,4,5,6,7"; got != want {
		t.Errorf("latest: rows %q, want %q", got, want)
	}
	if got, want := rows(replicate.RestoreOptions{Timestamp: beforeAll}), ""; got != want {
		t.Errorf("timestamp before the first commit: rows %q, want %q", got, want)
	}
	out := filepath.Join(t.TempDir(), "early.db")
	_, err = replicate.Restore(ctx, store, "pitr", out, replicate.RestoreOptions{Timestamp: beforeAll.Add(-time.Hour)})
	if !errors.Is(err, replicate.ErrNotRestorable) {
		t.Errorf("timestamp before the first snapshot: err = %v, want ErrNotRestorable", err)
	}
}

// TestSQLiteVersion: the linked SQLite must have the WAL-reset fix
// (3.51.3; https://sqlite.org/wal.html#walresetbug).
func TestSQLiteVersion(t *testing.T) {
	v, err := replicate.SQLiteVersion()
	if err != nil {
		t.Fatal(err)
	}
	var major, minor, patch int
	if _, err := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch); err != nil {
		t.Fatalf("parse version %q: %v", v, err)
	}
	if got := major*1_000_000 + minor*1_000 + patch; got < 3_051_003 {
		t.Fatalf("linked SQLite %s is older than 3.51.3 (WAL-reset bug)", v)
	}
}

// TestResumeWithoutSnapshot: a new Replicator on the same database and
// target resumes from the WAL position recorded in the target, with no
// snapshot, and the restore equals the source.
func TestResumeWithoutSnapshot(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	db := filepath.Join(t.TempDir(), "r.db")
	sqlite(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
	for round := range 3 {
		r := replicate.New(store, replicate.Options{SyncInterval: replicate.SyncImmediately})
		if _, err := r.Add(ctx, db, "r"); err != nil {
			t.Fatal(err)
		}
		sqlite(t, db, fmt.Sprintf("INSERT INTO t VALUES (%d, randomblob(5000));", round))
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		// Written while no walsync runs: still in the pinned-at-close WAL.
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if got, want := r.Stats().Snapshots, int64(map[bool]int{true: 1, false: 0}[round == 0]); got != want {
			t.Fatalf("round %d: snapshots = %d, want %d", round, got, want)
		}
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if _, err := replicate.Restore(ctx, store, "r", out, replicate.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatal("restore differs from source")
	}
}
