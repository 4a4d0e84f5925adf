package vfs_test

// The randomized model test of the in-process path: connections through
// the walsync VFS (and plain ncruces connections on the same file) are
// driven through random legal action sequences while a
// replicate.Replicator runs in the background, and the live target is
// restored with replicate.Restore after every step (see
// internal/modeltest for the invariants).
//
// Short run (part of the suite, about 30 s):
//
//	go test -race -run TestModelVFS ./vfs
//
// Reproduce a failure, leave out action kinds, log every step:
//
//	go test -race -run TestModelVFS -model.seed=N ./vfs
//	go test -race -run TestModelVFS -model.actions=-journalmode,-recreate ./vfs
//	go test -race -run TestModelVFS -model.seed=N -model.v ./vfs
//
// Long soak:
//
//	go test -race -run TestModelVFS -model.duration=30m -timeout 0 ./vfs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/internal/modeltest"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
	"github.com/walsync/walsync/vfs"
)

var modelCfg = modeltest.Flags(flag.CommandLine)

// modelApp is the replicator and VFS of the application under test; the
// restart action replaces both.
type modelApp struct {
	t     *testing.T
	store replicate.Storage
	opts  replicate.Options
	rng   func(int) int
	r     *replicate.Replicator
	v     *vfs.VFS
	stop  context.CancelFunc
	done  chan error
	// abrupt: the replicator's final flush times out at once, as if the
	// process had died.
	abrupt bool
}

// start creates a replicator, runs it in the background and registers a
// VFS on it. One replicator in two gets so short a shutdown timeout that
// its final flush fails, as if the process had died.
func (a *modelApp) start() {
	a.t.Helper()
	opts := a.opts
	if a.abrupt = a.rng(2) == 0; a.abrupt {
		opts.ShutdownTimeout = time.Millisecond
	}
	if path := os.Getenv("WALSYNC_MODEL_LOG"); path != "" { // the replicator's log, for a failure
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			opts.Logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	a.r = replicate.New(a.store, opts)
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done = cancel, make(chan error, 1)
	go func() { a.done <- a.r.Run(ctx) }()
	vfsSeq++
	v, err := vfs.Register(fmt.Sprintf("walsync-model-%d", vfsSeq), a.r, vfs.Options{})
	if err != nil {
		a.t.Fatal(err)
	}
	a.v = v
}

// close stops the replicator (its final flush may fail when abrupt) and
// unregisters the VFS; every connection must be closed.
func (a *modelApp) close() error {
	a.stop()
	err := <-a.done
	a.v.Unregister()
	if a.abrupt {
		return nil
	}
	return err
}

// snapshotAction takes an in-app snapshot while the application goes on
// checkpointing and committing (each commit then restarts the WAL, so the
// VFS calls the replicator before SQLite resets it). A small commit must
// not wait for the snapshot: one that takes over 250 ms and over half of
// the snapshot's time is reported as stalled by it.
func snapshotAction(app *modelApp) func(r *modeltest.Runner) (string, error) {
	return func(r *modeltest.Runner) (string, error) {
		d := app.v.DB(r.DB)
		if d == nil {
			return "no-db", nil
		}
		type result struct {
			err error
			at  time.Time
		}
		began := time.Now()
		done := make(chan result, 1)
		go func() {
			err := d.Snapshot(context.Background())
			done <- result{err, time.Now()}
		}()
		var res result
		var slowest time.Duration
		var slowestEnd time.Time
		commits := 0
	loop:
		for ; commits < 20; commits++ {
			select {
			case res = <-done:
				done = nil
				break loop
			default:
			}
			if _, err := r.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
				return "", modeltest.Violationf("writer-error", "checkpoint: %v", err)
			}
			t0 := time.Now()
			if _, err := r.Commit(modeltest.Small); err != nil {
				return "", err
			}
			if d := time.Since(t0); d > slowest {
				slowest, slowestEnd = d, time.Now()
			}
		}
		if done != nil {
			res = <-done
		}
		took := res.at.Sub(began)
		if res.err != nil {
			return "", modeltest.Violationf("snapshot", "in-app snapshot: %v", res.err)
		}
		r.Note("snapshot took %v; %d commits meanwhile, the slowest %v", took.Round(time.Millisecond), commits, slowest.Round(time.Millisecond))
		// Stalled: slow, ended right after the snapshot did, and waited for
		// much of it.
		if slowest > 250*time.Millisecond && slowest > took/2 && slowestEnd.Sub(res.at).Abs() < 100*time.Millisecond {
			return "", modeltest.Violationf("commit-stall", "a small commit took %v and ended when an in-app snapshot of %v did: the snapshot stalled the application's writer", slowest.Round(time.Millisecond), took.Round(time.Millisecond))
		}
		return fmt.Sprintf("commits-%d", min(commits, 3)), nil
	}
}

func TestModelVFS(t *testing.T) {
	cfg := *modelCfg
	dir := t.TempDir()
	shell := testenv.SQLite3(t)
	r := &modeltest.Runner{
		T: t, Cfg: &cfg, Repro: "-run '^TestModelVFS$' ./vfs",
		DB: filepath.Join(dir, "data", "app.db"), Scratch: t.TempDir(),
		MaxTxnBytes: 3 << 20, Default: 30 * time.Second,
		LongKinds: []string{"vfs", "vfs", "vfs", "plain"}, OnceKinds: []string{"vfs"},
		Slack:               modeltest.Resources{"fds": 16, "threads": 16, "goroutines": 20},
		ResourcesWhenClosed: true,
		Replicating:         func(kinds []string) bool { return slices.Contains(kinds, "vfs") },
		Inspect:             func(path string) (modeltest.Writer, error) { return modeltest.StartShell(shell, path) },
	}
	rng := r.Init()
	r.SyncInterval = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond}[rng.IntN(3)]
	snapshots := []time.Duration{24 * time.Hour, 3 * time.Second}[rng.IntN(2)]
	app := &modelApp{t: t, rng: rng.IntN, opts: replicate.Options{SyncInterval: r.SyncInterval, SnapshotInterval: snapshots}}
	if iv, l0, keep := r.Compaction(); iv != nil {
		app.opts.CompactionIntervals, app.opts.L0Retention, app.opts.Retention = iv, l0, keep
	}
	target := "file"
	if rng.IntN(3) == 0 {
		target = "s3"
		endpoint, bucket := testenv.S3(t)
		st, err := s3.New(context.Background(), s3.Config{Bucket: bucket, Prefix: "model", Endpoint: endpoint, Region: testenv.Region, PathStyle: true})
		if err != nil {
			t.Fatal(err)
		}
		app.store = st
	} else {
		st, err := dirstore.Open(filepath.Join(dir, "target"))
		if err != nil {
			t.Fatal(err)
		}
		app.store = st
	}
	r.Logf("target %s, sync interval %v, snapshot interval %v", target, r.SyncInterval, snapshots)
	app.start()
	t.Cleanup(func() { app.close() })

	name, err := replicate.NameFromPath(r.DB)
	if err != nil {
		t.Fatal(err)
	}
	r.Open = func(kind, db string) (modeltest.Writer, error) {
		if kind == "plain" {
			return modeltest.OpenConn(db, "")
		}
		return modeltest.OpenConn(db, app.v.Name())
	}
	r.Restore = func(ctx context.Context, out string) (bool, error) {
		_, err := replicate.Restore(ctx, app.store, name, out, replicate.RestoreOptions{Check: replicate.IntegrityNone})
		if errors.Is(err, replicate.ErrNoBackup) {
			return false, nil
		}
		return err == nil, err
	}
	r.Resources = func() (modeltest.Resources, error) {
		res, err := modeltest.ProcResources("self")
		if err == nil {
			res["goroutines"] = runtime.NumGoroutine()
		}
		return res, err
	}
	restart := func(r *modeltest.Runner, offline bool) (string, error) {
		if err := r.CloseApp(); err != nil {
			return "", err
		}
		if err := app.close(); err != nil {
			return "", modeltest.Violationf("replicator", "final flush: %v", err)
		}
		r.ReplicationDown()
		outcome := "ok"
		if offline {
			n := 1 + r.Rand().IntN(3)
			outcome = fmt.Sprintf("offline-%d", n)
			r.Note("replicator stopped; %d commits through plain connections meanwhile", n)
			for range n {
				w, err := modeltest.OpenConn(r.DB, "")
				if err != nil {
					return "", err
				}
				t := r.Model().Plan(r.Rand(), modeltest.Small, 1<<20, 0)
				if _, err := w.Exec(append(append([]string{"BEGIN"}, t.Stmts()...), "COMMIT")...); err != nil {
					w.Close()
					return "", modeltest.Violationf("writer-error", "plain connection: %v: %v", t, err)
				}
				r.Model().Committed(t, time.Now())
				r.Obligate(t)
				if err := w.Close(); err != nil {
					return "", err
				}
			}
		}
		app.start()
		r.ReplicationUp()
		r.Note("new replicator and VFS %s", app.v.Name())
		if err := r.ReopenApp(); err != nil {
			return "", err
		}
		// The application reads first: the VFS registers the database
		// with the replicator when SQLite opens its WAL.
		return outcome, r.VerifyLive(nil)
	}
	r.Actions = []modeltest.Action{
		{Name: "restart", Weight: 2, Do: func(r *modeltest.Runner) (string, error) { return restart(r, false) }},
		{Name: "offline", Weight: 1, Do: func(r *modeltest.Runner) (string, error) { return restart(r, true) }},
		{Name: "snapshot", Weight: 2, Do: snapshotAction(app)},
	}
	r.CreateDB()
	r.Run()
	t.Logf("replicator stats: %+v", app.r.Stats())
}
