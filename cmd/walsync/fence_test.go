package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// TestFenceSecondWatchRefused: a second `walsync watch` for a database name
// another one replicates into the same target refuses at start, naming the
// holder, and the first goes on undisturbed. Before, both ran and logged
// streams of "already exists" errors until one exited 1. Then the lease of
// a watch killed with SIGKILL does not hold up a new watch on this host
// (its holder is gone), and a graceful stop releases it.
func TestFenceSecondWatchRefused(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	target := s3URL(endpoint, bucket, "fence")
	dir := t.TempDir()
	db1, db2 := filepath.Join(dir, "one", "app.db"), filepath.Join(dir, "two", "app.db")
	createDB(t, db1)
	createDB(t, db2)
	first := startWatch(t, filepath.Join(dir, "first.log"), "-b", target, "--name", "app", db1)
	sqlite(t, db1, "INSERT INTO t(n) VALUES (1);")

	second := runFor(t, 30*time.Second, "watch", "-b", target, "--name", "app", db2)
	t.Logf("second watch: exit %d: %s", second.code, second.stderr)
	for _, want := range []string{`"app" is replicated into this target by host`, fmt.Sprintf("pid %d ", first.cmd.Process.Pid), "--takeover"} {
		if !strings.Contains(second.stderr, want) {
			t.Fatalf("second watch's error does not say %q:\n%s", want, second.stderr)
		}
	}
	if second.code != 1 {
		t.Fatalf("second watch exited %d, want 1", second.code)
	}
	sqlite(t, db1, "INSERT INTO t(n) VALUES (2);")
	waitLive(t, target, "app", "SELECT count(*) FROM t;", "2\n", 30*time.Second)
	if log := tail(first.log); strings.Contains(log, "already exists") || strings.Contains(log, `"level":"ERROR"`) {
		t.Fatalf("first watch logged errors:\n%s", log)
	}
	first.kill9()
	// The killed holder is gone: no wait for the expiry.
	startWatch(t, filepath.Join(dir, "second.log"), "-b", target, "--name", "app", db2).stop()
	// The graceful stop released the lease.
	startWatch(t, filepath.Join(dir, "third.log"), "-b", target, "--name", "app", db1).stop()
}

// runFor runs walsync, killing it after d (exit code -1).
func runFor(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run walsync %v: %v", args, err)
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

// TestNameRefusedByTarget: a name the target cannot hold is refused at
// start with one line naming the database. Before, watch started and every
// upload failed.
func TestNameRefusedByTarget(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	r := runFor(t, 30*time.Second, "watch", "-b", s3URL(endpoint, bucket, strings.Repeat("p", 900)), "--name", strings.Repeat("n", 100), db)
	if r.code == 0 {
		t.Fatalf("watch exited 0")
	}
	if want := "add " + db + `: invalid database name "nnn`; !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "over S3's limit of 1024") {
		t.Fatalf("stderr=%q, want %q and the limit", r.stderr, want)
	}
}
