package main

// The randomized model test of the watch path: a real `walsync watch`
// process replicates one database that sqlite3 shells and python3
// processes write through random legal action sequences, and the live
// target is restored with `walsync restore` after every step (see
// internal/modeltest for the invariants).
//
// Short run (part of the suite, about 45 s):
//
//	go test -race -run TestModelWatch ./cmd/walsync
//
// Reproduce a failure, leave out an action kind, log every step:
//
//	go test -race -run 'TestModelWatch/file' -model.seed=N ./cmd/walsync
//	go test -race -run TestModelWatch -model.actions=-journalmode,-replace ./cmd/walsync
//	go test -race -run TestModelWatch -model.seed=N -model.v ./cmd/walsync
//
// Long soak:
//
//	go test -race -run TestModelWatch -model.duration=30m -timeout 0 ./cmd/walsync

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/modeltest"
	"github.com/walsync/walsync/internal/testenv"
)

var modelCfg = modeltest.Flags(flag.CommandLine)

// TestModelWatch runs the model against `walsync watch` on a file://
// target and on S3 (versitygw).
func TestModelWatch(t *testing.T) {
	for _, c := range []struct {
		target string
		short  time.Duration
	}{{"file", 25 * time.Second}, {"s3", 20 * time.Second}} {
		t.Run(c.target, func(t *testing.T) { runWatchModel(t, c.target, c.short) })
	}
}

func runWatchModel(t *testing.T, target string, short time.Duration) {
	cfg := *modelCfg
	dir := t.TempDir()
	dataDir, scratch := filepath.Join(dir, "data"), filepath.Join(dir, "scratch")
	for _, d := range []string{dataDir, scratch} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shell := testenv.SQLite3(t)
	r := &modeltest.Runner{
		T: t, Cfg: &cfg, Repro: fmt.Sprintf("-run '^TestModelWatch$/^%s$' ./cmd/walsync", target),
		DB: filepath.Join(dataDir, "app.db"), Scratch: scratch,
		Pinned: true, MaxTxnBytes: 6 << 20, Default: short,
		LongKinds: []string{"py", "sh"}, OnceKinds: []string{"py", "sh"},
		Slack: modeltest.Resources{"fds": 24, "threads": 16},
	}
	r.Open = func(kind, db string) (modeltest.Writer, error) {
		if kind == "py" {
			return modeltest.StartPython(scratch, db)
		}
		return modeltest.StartShell(shell, db)
	}
	rng := r.Init()
	r.SyncInterval = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond}[rng.IntN(3)]
	r.CheckpointFrames = []int{50, 200, 1000}[rng.IntN(3)]
	dirMode := rng.IntN(2) == 0
	// Frequent snapshots keep the chain a restore reads short in a soak.
	snapshots := []time.Duration{24 * time.Hour, 15 * time.Second}[rng.IntN(2)]

	var url string
	switch target {
	case "file":
		url = "file://" + filepath.Join(dir, "target")
	default:
		endpoint, bucket := testenv.S3(t)
		url = s3URL(endpoint, bucket, "model")
	}
	args := []string{"-b", url, "--sync-interval", r.SyncInterval.String(),
		"--checkpoint-frames", strconv.Itoa(r.CheckpointFrames), "--snapshot-interval", snapshots.String(),
		"--spool-dir", scratch}
	if iv, l0, keep := r.Compaction(); iv != nil {
		var parts []string
		for _, d := range iv {
			parts = append(parts, d.String())
		}
		args = append(args, "--compaction-intervals", strings.Join(parts, ","), "--l0-retention", l0.String(), "--retention", keep.String())
	}
	name := strings.TrimPrefix(r.DB, "/")
	if dirMode {
		args = append(args, "--dir", dataDir, "--pattern", "*.db")
		name = "app.db"
	} else {
		args = append(args, r.DB)
	}
	r.Logf("walsync watch %s", strings.Join(args, " "))

	r.Inspect = func(path string) (modeltest.Writer, error) { return modeltest.StartShell(shell, path) }
	fast := restoreBin(t)
	r.CreateDB()
	logPath := filepath.Join(dir, "watch.log")
	w := startWatch(t, logPath, args...)
	r.Restore = func(ctx context.Context, out string) (bool, error) {
		res := runWith(t, fast, "restore", name, "-b", url, "-o", out)
		switch {
		case res.code == 0:
			return true, nil
		case strings.Contains(res.stderr, "no backup found"):
			return false, nil
		}
		return false, fmt.Errorf("walsync restore: exit %d: %s", res.code, strings.TrimSpace(res.stderr))
	}
	r.Resources = func() (modeltest.Resources, error) {
		if w.cmd.ProcessState != nil {
			return nil, errors.New("walsync is not running")
		}
		return modeltest.ProcResources(strconv.Itoa(w.cmd.Process.Pid))
	}
	r.Logs = func() string { return warnings(logPath) }
	r.Actions = []modeltest.Action{{Name: "kill", Weight: 2, Do: func(r *modeltest.Runner) (string, error) {
		w.kill9()
		r.ReplicationDown()
		r.ResetResources()
		n := r.Rand().IntN(3)
		r.Note("walsync killed with SIGKILL; %d commits while it is down", n)
		for range n {
			if _, err := r.Commit(modeltest.Small); err != nil {
				return "", err
			}
		}
		w = startWatch(t, logPath, args...)
		r.ReplicationUp()
		r.Note("walsync restarted (pid %d)", w.cmd.Process.Pid)
		return fmt.Sprintf("down-%d", n), nil
	}}}
	r.Run()
	t.Logf("walsync log: %s", logSummary(t, logPath))
}

// restoreBin returns a walsync binary built without -race, for the
// model's restores: the race-instrumented one takes over a second to
// restore a few MiB, and restore is not what the model tests for races.
func restoreBin(t *testing.T) string {
	fastOnce.Do(func() {
		fastPath = filepath.Join(filepath.Dir(binPath), "walsync-norace")
		out, err := exec.Command("go", "build", "-o", fastPath, ".").CombinedOutput()
		if err != nil {
			fastErr = fmt.Errorf("build walsync without -race: %v: %s", err, out)
		}
	})
	if fastErr != nil {
		t.Fatal(fastErr)
	}
	return fastPath
}

var (
	fastOnce sync.Once
	fastPath string
	fastErr  error
)

// warnings returns the WARN and ERROR records of a walsync log and its
// last lines.
func warnings(path string) string {
	b, _ := os.ReadFile(path)
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			out = append(out, line)
		}
	}
	if len(out) > 30 {
		out = out[len(out)-30:]
	}
	return "WARN/ERROR records:\n" + strings.Join(out, "\n") + "\nlast lines:\n" + tail(path)
}

// logSummary counts the records of a walsync log by level and message.
func logSummary(t *testing.T, path string) string {
	counts := map[string]int{}
	for _, rec := range logLines(t, path) {
		counts[fmt.Sprint(rec["level"], " ", rec["msg"])]++
	}
	return fmt.Sprint(counts)
}
