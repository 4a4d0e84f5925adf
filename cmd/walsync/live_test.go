package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests in this file restore the LIVE target: walsync keeps running,
// nothing asks it to flush, as after a host dies.

// restoreLive restores name from target into a fresh file and returns the
// output of script on it ("" if the restore fails: nothing uploaded yet).
func restoreLive(t *testing.T, target, name, script string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "live.db")
	if r := run(t, "restore", name, "-b", target, "-o", out); r.code != 0 {
		return ""
	}
	return sqlite(t, out, script)
}

// waitLive polls the live target until script's output on a restore is
// want, failing after deadline. The deadline is the lag bound under test:
// a failure means a commit was not durable in time.
func waitLive(t *testing.T, target, name, script, want string, deadline time.Duration) {
	t.Helper()
	end := time.Now().Add(deadline)
	got := ""
	for time.Now().Before(end) {
		if got = restoreLive(t, target, name, script); got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("live restore after %v: %q, want %q", deadline, got, want)
}

// TestLiveLoneCommit: one INSERT by the sqlite3 CLI into a quiet database
// is in a restore of the live target within the lag bound (sync interval
// plus upload), five times in a row. Before, the row was missing in about
// half the tries until the next write or a SIGTERM.
func TestLiveLoneCommit(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "quiet.db")
	createDB(t, db)
	target := "file://" + filepath.Join(dir, "target")
	startWatch(t, filepath.Join(dir, "watch.log"), "-b", target, "--name", "quiet", db)
	for i := 1; i <= 5; i++ {
		// Quiet: wait for the previous row to be durable, then one commit.
		sqlite(t, db, fmt.Sprintf("INSERT INTO t(n) VALUES (%d);", i))
		waitLive(t, target, "quiet", "SELECT count(*) FROM t;", fmt.Sprintf("%d\n", i), 2*time.Second+5*time.Second)
	}
}

// TestLiveDeletedCreatedAgain: a database given by path is deleted, then
// created again with other content; walsync replicates the new one (from a
// snapshot) without a restart. Before, walsync logged one WARN and the
// restores returned the old content for good.
func TestLiveDeletedCreatedAgain(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	sqlite(t, db, "INSERT INTO t(n) VALUES (1), (2), (3);")
	target := "file://" + filepath.Join(dir, "target")
	w := startWatch(t, filepath.Join(dir, "watch.log"), "-b", target, "--name", "app", "--sync-interval", "100ms", db)
	waitLive(t, target, "app", "SELECT count(*) FROM t;", "3\n", 10*time.Second)
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(db + s)
	}
	createDB(t, db)
	sqlite(t, db, "INSERT INTO t(n) VALUES (42);")
	waitLive(t, target, "app", "SELECT group_concat(n) FROM t;", "42\n", 10*time.Second)
	sqlite(t, db, "INSERT INTO t(n) VALUES (43);")
	waitLive(t, target, "app", "SELECT group_concat(n) FROM t;", "42,43\n", 10*time.Second)
	w.stop()
}

// TestLiveAppStoppedFileReplaced: the application stops, walsync leaves
// its database as SQLite would (everything checkpointed, no frame left in
// the WAL), and the file is then replaced while no connection is open: the
// application reads the new file, intact. Before, walsync's pin kept the
// old WAL, which SQLite then read over the new file.
func TestLiveAppStoppedFileReplaced(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	target := "file://" + filepath.Join(dir, "target")
	w := startWatch(t, filepath.Join(dir, "watch.log"), "-b", target, "--name", "app", "--sync-interval", "100ms", db)
	app := startSQLite(t, db)
	if err := app.exec("BEGIN;" + strings.Repeat("INSERT INTO t(n) VALUES (1);", 300) + "COMMIT;\n"); err != nil {
		t.Fatal(err)
	}
	if err := app.close(); err != nil { // the application stops
		t.Fatal(err)
	}
	waitLive(t, target, "app", "SELECT count(*) FROM t;", "300\n", 10*time.Second)
	// walsync notices the application is gone and empties the WAL.
	waitFor(t, func() bool {
		fi, err := os.Stat(db + "-wal")
		return err != nil || fi.Size() == 0
	})
	other := filepath.Join(dir, "other.db")
	createDB(t, other)
	sqlite(t, other, strings.Repeat("INSERT INTO t(n) VALUES (5);", 5))
	if err := os.Rename(other, db); err != nil {
		t.Fatal(err)
	}
	// Applications set a busy timeout: walsync takes its locks on the
	// new file as it appears (see README).
	if got, want := sqlite(t, db, ".timeout 5000\nSELECT count(*) FROM t; PRAGMA integrity_check;"), "5\nok\n"; got != want {
		t.Fatalf("the application reads %q after the file was replaced, want %q", got, want)
	}
	waitLive(t, target, "app", "SELECT count(*), sum(n) FROM t;", "5|25\n", 10*time.Second)
	w.stop()
}

// TestSnapshotCommandOnce: `walsync snapshot` of a database new to the
// target uploads one full snapshot, not two.
func TestSnapshotCommandOnce(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "s.db")
	createDB(t, db)
	sqlite(t, db, "INSERT INTO t(n) VALUES (1);")
	target := filepath.Join(dir, "target")
	mustRun(t, "snapshot", db, "-b", "file://"+target, "--name", "s")
	snaps, _ := filepath.Glob(filepath.Join(target, "s", "0009", "*.ltx"))
	if len(snaps) != 1 {
		t.Fatalf("snapshots %v, want one", snaps)
	}
}
