package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

// txnScript returns the SQL of transaction i of a writer: rows of varying
// size (some spill to overflow pages), a delete, and every 50 transactions
// a TRUNCATE or RESTART checkpoint requested by the application.
func txnScript(i int, rng *rand.Rand) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "BEGIN;\nINSERT INTO t(n, v) VALUES (%d, randomblob(%d));\n", i, 10+rng.IntN(9000))
	fmt.Fprintf(&sb, "INSERT INTO t(n, v) VALUES (%d, randomblob(%d));\n", i, rng.IntN(200))
	fmt.Fprintf(&sb, "DELETE FROM t WHERE n = %d AND id %% 3 = 0;\n", i-5)
	if i%10 == 0 {
		fmt.Fprintf(&sb, "UPDATE t SET v = randomblob(%d) WHERE n = %d;\n", rng.IntN(6000), i-3)
	}
	sb.WriteString("COMMIT;\n")
	if i%50 == 49 {
		mode := "TRUNCATE"
		if i%100 == 99 {
			mode = "RESTART"
		}
		fmt.Fprintf(&sb, "PRAGMA busy_timeout=100;\nPRAGMA wal_checkpoint(%s);\nPRAGMA busy_timeout=10000;\n", mode)
	}
	return sb.String()
}

// writeLoad runs n transactions through one sqlite3 process. It may run
// on any goroutine: failures are reported with t.Error.
func writeLoad(t *testing.T, db string, from, n int, seed uint64) {
	p := startSQLite(t, db)
	err := p.exec("PRAGMA busy_timeout=10000;\nPRAGMA synchronous=NORMAL;\n")
	rng := rand.New(rand.NewPCG(seed, uint64(from)))
	for i := from; i < from+n && err == nil; i++ {
		err = p.exec(txnScript(i, rng))
	}
	if cerr := p.close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Errorf("writer %s: %v", db, err)
	}
}

// TestWatchCheckpointsRestore is the main end-to-end test: ten databases,
// each written by its own sqlite3 process (1,000 transactions, varying row
// sizes, deletes, TRUNCATE and RESTART checkpoints every 50 transactions),
// replicated by `walsync watch` to versitygw. Every restore must equal its
// source, pass integrity_check, and no snapshot may follow the first.
func TestWatchCheckpointsRestore(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "e2e")
	dir := t.TempDir()
	var dbs []string
	for i := range 10 {
		name := fmt.Sprintf("db%d.db", i)
		if i < 2 {
			name = "app.db" // two databases share a file name
		}
		db := filepath.Join(dir, fmt.Sprintf("d%d", i), name)
		createDB(t, db)
		dbs = append(dbs, db)
	}
	logPath := filepath.Join(t.TempDir(), "watch.log")
	w := startWatch(t, logPath, append([]string{"-b", url, "--sync-interval", "100ms"}, dbs...)...)

	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() { writeLoad(t, db, 0, 1000, uint64(i)) })
	}
	wg.Wait()
	w.stop()

	snapshots := map[string]int{}
	for _, rec := range logLines(t, logPath) {
		if rec["msg"] == "snapshot" {
			snapshots[fmt.Sprint(rec["db"])]++
		}
		if rec["level"] == "ERROR" {
			t.Errorf("error logged: %v", rec)
		}
	}
	for i, db := range dbs {
		name := strings.TrimPrefix(db, "/")
		if got, want := snapshots[name], 1; got != want {
			t.Errorf("%s: %d snapshots, want %d", name, got, want)
		}
		out := filepath.Join(t.TempDir(), "restored.db")
		arg := name
		if i%2 == 0 {
			arg = db // restore accepts the original path too
		}
		mustRun(t, "restore", arg, "-b", url, "-o", out)
		if got, want := dump(t, out), dump(t, db); got != want {
			t.Errorf("%s: restored dump differs from the source", db)
		}
		if got := sqlite(t, out, "PRAGMA integrity_check;\n"); got != "ok\n" {
			t.Errorf("%s: integrity_check: %s", db, got)
		}
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: restored file mode %v, %v; want 0600", db, fi.Mode(), err)
		}
	}
	t.Logf("snapshots per database: %v", snapshots)
}

// TestKill9 kills walsync mid-load, restarts it and lets the load finish:
// the final restore must equal the source.
func TestKill9(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "kill")
	dir := t.TempDir()
	dbs := []string{filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")}
	for _, db := range dbs {
		createDB(t, db)
	}
	logPath := filepath.Join(t.TempDir(), "watch.log")
	args := append([]string{"-b", url, "--sync-interval", "50ms", "--checkpoint-frames", "100"}, dbs...)
	w := startWatch(t, logPath, args...)
	for round := range 3 {
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Go(func() { writeLoad(t, db, round*200, 200, uint64(i)) })
		}
		if round < 2 {
			// Kill while the writers are still running.
			writeLoad(t, dbs[0], 10000+round*50, 50, 99)
			w.kill9()
			wg.Wait()
			w = startWatch(t, logPath, args...)
		} else {
			wg.Wait()
		}
	}
	w.stop()
	counts := map[string]int{}
	for _, rec := range logLines(t, logPath) {
		counts[fmt.Sprint(rec["msg"], " ", rec["reason"])]++
	}
	t.Logf("log messages after two kill -9: %v", counts)
	for _, db := range dbs {
		out := filepath.Join(t.TempDir(), "restored.db")
		mustRun(t, "restore", db, "-b", url, "-o", out)
		if got, want := dump(t, out), dump(t, db); got != want {
			t.Errorf("%s: restored dump differs from the source after kill -9", db)
		}
	}
}

// TestWatchDir picks up a database created while walsync runs, names it
// relative to the directory and replicates it.
func TestWatchDir(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "dir")
	dir := t.TempDir()
	createDB(t, filepath.Join(dir, "old.db"))
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a database"), 0o644)
	logPath := filepath.Join(t.TempDir(), "watch.log")
	w := startWatch(t, logPath, "-b", url, "--dir", dir, "--pattern", "*.db", "--sync-interval", "50ms")
	newDB := filepath.Join(dir, "tenants", "t1", "new.db")
	createDB(t, newDB)
	writeLoad(t, newDB, 0, 30, 1)
	writeLoad(t, filepath.Join(dir, "old.db"), 0, 30, 2)
	// The new database is picked up asynchronously (inotify): wait until it
	// is in the target; the flush at SIGTERM then uploads the rest.
	waitFor(t, func() bool {
		return strings.Contains(run(t, "list", "-b", url).stdout, "tenants/t1/new.db")
	})
	w.stop()
	for name, db := range map[string]string{"old.db": filepath.Join(dir, "old.db"), "tenants/t1/new.db": newDB} {
		out := filepath.Join(t.TempDir(), "restored.db")
		mustRun(t, "restore", name, "-b", url, "-o", out)
		if got, want := dump(t, out), dump(t, db); got != want {
			t.Errorf("%s: restored dump differs from the source", name)
		}
	}
	list := mustRun(t, "list", "-b", url)
	if !strings.Contains(list, "tenants/t1/new.db") || !strings.Contains(list, "old.db") {
		t.Errorf("list output lacks the databases:\n%s", list)
	}
}
