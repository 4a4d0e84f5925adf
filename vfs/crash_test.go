package vfs_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/vfs"
)

// The application process of TestKill9App: the test binary run again with
// these variables set.
const (
	appEnv       = "WALSYNC_TEST_APP_DB"
	appTargetEnv = "WALSYNC_TEST_APP_TARGET"
	appCountEnv  = "WALSYNC_TEST_APP_COUNT"
)

// appMain writes rows with consecutive ids through the walsync VFS,
// printing each id once its transaction has committed, checkpointing now
// and then, until killed or, with a count, until it has written that many
// rows; then it flushes and exits.
func appMain() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "app:", err); return 1 }
	ctx := context.Background()
	store, err := dirstore.Open(os.Getenv(appTargetEnv))
	if err != nil {
		return fail(err)
	}
	opts := replicate.Options{SyncInterval: 20 * time.Millisecond}
	if os.Getenv("WALSYNC_TEST_APP_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r := replicate.New(store, opts)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	v, err := vfs.Register("walsync-app", r, vfs.Options{})
	if err != nil {
		return fail(err)
	}
	db, err := sql.Open("sqlite3", "file:"+os.Getenv(appEnv)+"?vfs=walsync-app&_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)")
	if err != nil {
		return fail(err)
	}
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		return fail(err)
	}
	var next int64
	if err := db.QueryRow("SELECT coalesce(max(id), 0) + 1 FROM t").Scan(&next); err != nil {
		return fail(err)
	}
	count, _ := strconv.Atoi(os.Getenv(appCountEnv))
	out := bufio.NewWriter(os.Stdout)
	for i := 0; count == 0 || i < count; i++ {
		if _, err := db.Exec("INSERT INTO t(id, v) VALUES (?, randomblob(?))", next, 100+next%3000); err != nil {
			return fail(err)
		}
		fmt.Fprintln(out, next)
		out.Flush()
		next++
		if i%40 == 39 {
			mode := []string{"TRUNCATE", "RESTART", "PASSIVE", "FULL"}[i/40%4]
			if _, err := db.Exec("PRAGMA wal_checkpoint(" + mode + ")"); err != nil {
				return fail(err)
			}
		}
	}
	if err := v.Flush(ctx); err != nil {
		return fail(err)
	}
	db.Close()
	stop()
	if err := <-done; err != nil {
		return fail(err)
	}
	return 0
}

// startApp starts the application process and returns it with a channel
// of the ids it reports committed.
func startApp(t *testing.T, dbPath, target string, count int) (*exec.Cmd, <-chan int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), appEnv+"="+dbPath, appTargetEnv+"="+target, appCountEnv+"="+strconv.Itoa(count))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ids := make(chan int64, 1024)
	go func() {
		defer close(ids)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if id, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 64); err == nil {
				ids <- id
			}
		}
	}()
	return cmd, ids
}

// TestKill9App kills an application writing through the VFS at random
// points, 20 times, restarting it each time. Every restore is an exact
// prefix of the committed transactions, and after a last clean run the
// restore equals the database.
func TestKill9App(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	target := filepath.Join(dir, "target")
	name, _ := replicate.NameFromPath(dbPath)
	rng := rand.New(rand.NewPCG(7, 8))
	ctx := context.Background()
	var committed int64
	check := func(cycle int) int64 {
		store, err := dirstore.Open(target)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "restored.db")
		if _, err := replicate.Restore(ctx, store, name, out, replicate.RestoreOptions{}); err != nil {
			t.Fatalf("cycle %d: restore: %v", cycle, err)
		}
		db := openPlain(t, out, "")
		var n, maxID, sum int64
		var tables int
		if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 't'").Scan(&tables); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		if tables == 0 {
			db.Close()
			return 0 // killed before the table's creation was uploaded: the empty prefix
		}
		if err := db.QueryRow("SELECT count(*), coalesce(max(id),0), coalesce(sum(id),0) FROM t").Scan(&n, &maxID, &sum); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		if n != maxID || sum != n*(n+1)/2 {
			t.Fatalf("cycle %d: restore is not a prefix: %d rows, max id %d", cycle, n, maxID)
		}
		if n > committed {
			t.Fatalf("cycle %d: restore has %d rows, only %d were committed", cycle, n, committed)
		}
		db.Close()
		return n
	}
	for cycle := range 20 {
		cmd, ids := startApp(t, dbPath, target, 0)
		kill := 20 + rng.IntN(150)
		for i := 0; i < kill; i++ {
			id, ok := <-ids
			if !ok {
				t.Fatalf("cycle %d: the application exited early", cycle)
			}
			committed = id
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		for id := range ids { // committed before the kill landed
			committed = id
		}
		got := check(cycle)
		t.Logf("cycle %d: killed after id %d, restore has %d rows", cycle, committed, got)
	}
	cmd, ids := startApp(t, dbPath, target, 10)
	for id := range ids {
		committed = id
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v", err)
	}
	if got := check(20); got != committed {
		t.Fatalf("after recovery the restore has %d rows, want %d", got, committed)
	}
	snaps, _ := filepath.Glob(filepath.Join(target, name, "0009", "*.ltx"))
	t.Logf("%d committed transactions, %d snapshots in the target", committed, len(snaps))
}
