package replicate_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/replicate"
)

// sqlite runs the sqlite3 CLI on db with script on stdin.
func sqlite(t testing.TB, db, script string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-bail", db)
	cmd.Stdin = strings.NewReader(script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", db, err, errb.String())
	}
	return out.String()
}

func dump(t testing.TB, db string) string { return sqlite(t, db, ".dump\n") }

func TestReplicateRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	sqlite(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
	store := memstore.New()
	r := replicate.New(store, replicate.Options{SyncInterval: replicate.SyncImmediately})
	defer r.Close()
	if _, err := r.Add(ctx, db, "app"); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		var sb strings.Builder
		for j := range 20 {
			fmt.Fprintf(&sb, "INSERT INTO t(v) VALUES (printf('%%d-%%d-%%s', %d, %d, hex(randomblob(%d))));\n", i, j, 10+j*100)
		}
		sqlite(t, db, ".timeout 5000\n"+sb.String())
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	res, err := replicate.Restore(ctx, store, "app", out, replicate.RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatalf("restored dump differs:\n%s\nwant\n%s", got, want)
	}
	t.Logf("restored txid %s from %d files; keys %v; stats %+v", res.TXID, res.Files, store.Keys(""), r.Stats())
}

// TestCheckpointsNeverLoseFrames runs application checkpoints of every mode
// and walsync's own checkpoints while replicating: the restore must equal
// the source and no snapshot may follow the first.
func TestCheckpointsNeverLoseFrames(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	sqlite(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
	store := memstore.New()
	r := replicate.New(store, replicate.Options{SyncInterval: replicate.SyncImmediately, CheckpointFrames: 20})
	defer r.Close()
	if _, err := r.Add(ctx, db, "app"); err != nil {
		t.Fatal(err)
	}
	modes := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
	for i := range 40 {
		script := fmt.Sprintf(".timeout 50\nINSERT INTO t(v) VALUES (randomblob(%d));\nINSERT INTO t(v) VALUES (randomblob(3000));\nDELETE FROM t WHERE id %% 7 = 3;\nPRAGMA wal_checkpoint(%s);\n", 100+i*50, modes[i%4])
		sqlite(t, db, script)
		if i%3 == 0 {
			if err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	if _, err := replicate.Restore(ctx, store, "app", out, replicate.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatalf("restored dump differs")
	}
	st := r.Stats()
	if st.Snapshots != 1 {
		t.Fatalf("snapshots = %d, want 1", st.Snapshots)
	}
	if st.Checkpoints == 0 {
		t.Fatalf("walsync never checkpointed")
	}
	t.Logf("stats %+v", st)
}
