package replicate

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/memstore"
)

// TestDBOptions: a database added with its own sync interval (AddWith, and
// WatchDirWith for a tree) is uploaded at that pace while the others keep
// the Replicator's (an hour here: nothing of theirs moves).
func TestDBOptions(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	r := New(store, Options{SyncInterval: time.Hour, SnapshotInterval: 48 * time.Hour})
	dir := t.TempDir()
	slow, fast := filepath.Join(dir, "slow.db"), filepath.Join(dir, "fast.db")
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	inTree := filepath.Join(tree, "t.db")
	for _, p := range []string{slow, fast, inTree} {
		runSQLite(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
	}
	if _, err := r.Add(ctx, slow, "slow"); err != nil {
		t.Fatal(err)
	}
	fastDB, err := r.AddWith(ctx, fast, "fast", DBOptions{SyncInterval: SyncImmediately, SnapshotInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WatchDirWith(ctx, tree, "*.db", DBOptions{SyncInterval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	stop := runReplicator(t, r)
	t.Cleanup(func() { stop() })        // on failure; stopping twice is harmless
	if err := r.Sync(ctx); err != nil { // the first snapshots
		t.Fatal(err)
	}
	for _, p := range []string{slow, fast, inTree} {
		runSQLite(t, p, "INSERT INTO t VALUES (1);")
	}
	rows := func(name string) string {
		out := filepath.Join(t.TempDir(), "out.db")
		if _, err := Restore(ctx, store, name, out, RestoreOptions{Check: IntegrityNone}); err != nil {
			t.Fatal(err)
		}
		return runSQLite(t, out, "SELECT count(*) FROM t;")
	}
	deadline := time.Now().Add(30 * time.Second)
	for rows("fast") != "1\n" || rows("t.db") != "1\n" {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: fast has %q rows, t.db %q, want 1 each", rows("fast"), rows("t.db"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := rows("slow"); got != "0\n" {
		t.Errorf("slow (1h interval) has %q rows in the target, want 0", got)
	}
	if got, want := fastDB.snapshotInterval(), time.Minute; got != want {
		t.Errorf("fast snapshot interval = %v, want %v", got, want)
	}
	for _, d := range r.DBs() {
		if d.name == "slow" {
			if got, want := d.snapshotInterval(), 48*time.Hour; got != want {
				t.Errorf("slow snapshot interval = %v, want %v", got, want)
			}
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := rows("slow"); got != "1\n" { // flushed at stop
		t.Errorf("slow after stop has %q rows, want 1", got)
	}
}
