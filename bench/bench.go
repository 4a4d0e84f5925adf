// Package bench is the harness behind `walsync bench`: it creates N WAL
// databases, drives them from a separate writer process, runs walsync as a
// child process replicating them, samples walsync's memory and CPU from
// /proc, then restores every database and checks it equals its source.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/walsync/walsync/replicate"
)

// Config configures a benchmark run.
type Config struct {
	Exe          string        // walsync executable (runs `watch` and `bench-writer`)
	DBs          []int         // database counts to measure, one run each
	Duration     time.Duration // measured window, while the writer runs
	Warmup       time.Duration // before the window: initial snapshots
	Rate         float64       // commits per second per active database
	IdleFraction float64       // fraction of databases never written
	RowBytes     int           // payload bytes per commit
	Target       string        // target URL; empty: a temporary file:// directory
	WorkDir      string        // parent of the temporary directories; default os.TempDir()
	Progress     io.Writer     // progress lines; nil: none
	Logger       *slog.Logger
	// Open opens a target URL, to verify restores.
	Open func(ctx context.Context, url string) (replicate.Storage, error)
}

// Row is the result of one run.
type Row struct {
	Tool         string  `json:"tool"`
	Mode         string  `json:"mode"`
	DBs          int     `json:"dbs"`
	RSSAvgKB     int64   `json:"rss_avg_kb"`
	RSSPeakKB    int64   `json:"rss_peak_kb"`
	PSSKB        int64   `json:"pss_kb"`
	AnonKB       int64   `json:"rss_anon_kb"`
	Threads      int64   `json:"threads"`
	FDs          int     `json:"fds"`
	CPUPerMin    float64 `json:"cpu_s_per_min"`
	RequestsMin  float64 `json:"requests_per_min"`
	Commits      int64   `json:"commits"`
	RestoredOK   bool    `json:"restored_ok"`
	RestoreError string  `json:"restore_error,omitempty"`
}

// Run measures walsync for each database count in cfg.DBs.
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var rows []Row
	for _, n := range cfg.DBs {
		row, err := runOne(ctx, cfg, n)
		if err != nil {
			return rows, fmt.Errorf("bench --dbs %d: %w", n, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (cfg Config) progress(format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format+"\n", args...)
	}
}

func runOne(ctx context.Context, cfg Config, n int) (Row, error) {
	row := Row{Tool: "walsync", Mode: "one-process", DBs: n}
	work, err := os.MkdirTemp(cfg.WorkDir, "walsync-bench-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(work)
	dbDir := filepath.Join(work, "dbs")
	target := cfg.Target
	if target == "" {
		target = "file://" + filepath.Join(work, "target")
	} else {
		target = withPrefix(target, fmt.Sprintf("bench-%d-%d", n, time.Now().UnixNano()))
	}
	active := n - int(float64(n)*cfg.IdleFraction)
	wcfg := WriterConfig{Dir: dbDir, DBs: n, Active: active, Rate: cfg.Rate, RowBytes: cfg.RowBytes, Duration: cfg.Duration}

	cfg.progress("dbs=%d: creating %d databases", n, n)
	if err := runWriter(ctx, cfg.Exe, wcfg, true, io.Discard); err != nil {
		return row, fmt.Errorf("create databases: %w", err)
	}

	logf, err := os.Create(filepath.Join(work, "walsync.log"))
	if err != nil {
		return row, err
	}
	defer logf.Close()
	ws := exec.CommandContext(ctx, cfg.Exe, "watch", "--dir", dbDir, "--pattern", "db*.db", "-b", target, "--log-format", "json")
	ws.Stdout, ws.Stderr = logf, logf
	ws.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
	if err := ws.Start(); err != nil {
		return row, err
	}
	exited := make(chan error, 1)
	go func() { exited <- ws.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			ws.Process.Kill()
			<-exited
		}
	}()

	cfg.progress("dbs=%d: walsync pid %d, warm-up %s", n, ws.Process.Pid, cfg.Warmup)
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return row, err
	}
	before, err := ReadProc(ws.Process.Pid)
	if err != nil {
		return row, fmt.Errorf("walsync exited early (see its log): %w", err)
	}
	objsBefore, err := countObjects(ctx, cfg, target)
	if err != nil {
		return row, err
	}

	cfg.progress("dbs=%d: writing to %d databases at %g commits/s each for %s", n, active, cfg.Rate, cfg.Duration)
	start := time.Now()
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() { werr = runWriter(ctx, cfg.Exe, wcfg, false, logf) })
	var samples []Sample
	tick := time.NewTicker(time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
sampling:
	for {
		select {
		case <-done:
			break sampling
		case <-tick.C:
			if s, err := ReadProc(ws.Process.Pid); err == nil {
				samples = append(samples, s)
			}
		}
	}
	tick.Stop()
	window := time.Since(start)
	after, err := ReadProc(ws.Process.Pid)
	if err != nil {
		return row, fmt.Errorf("walsync exited during the run (see its log): %w", err)
	}
	if werr != nil {
		return row, fmt.Errorf("writer: %w", werr)
	}

	cfg.progress("dbs=%d: stopping walsync (SIGTERM flushes)", n)
	ws.Process.Signal(syscall.SIGTERM)
	stopped = true
	select {
	case err := <-exited:
		if err != nil {
			return row, fmt.Errorf("walsync exited with %v (see its log)", err)
		}
	case <-time.After(2 * time.Minute):
		ws.Process.Kill()
		<-exited
		return row, errors.New("walsync did not stop within 2 minutes of SIGTERM")
	}
	objsAfter, err := countObjects(ctx, cfg, target)
	if err != nil {
		return row, err
	}

	minutes := window.Minutes()
	row.CPUPerMin = (after.CPU - before.CPU) / minutes
	row.RequestsMin = float64(objsAfter-objsBefore) / minutes
	for _, s := range samples {
		row.RSSAvgKB += s.RSSKB
		row.PSSKB = max(row.PSSKB, s.PSSKB)
		row.AnonKB = max(row.AnonKB, s.AnonKB)
		row.Threads = max(row.Threads, s.Threads)
		row.FDs = max(row.FDs, s.FDs)
		row.RSSPeakKB = max(row.RSSPeakKB, s.RSSKB)
	}
	if len(samples) > 0 {
		row.RSSAvgKB /= int64(len(samples))
	}
	row.RSSPeakKB = max(row.RSSPeakKB, after.HWMKB)

	cfg.progress("dbs=%d: restoring and verifying %d databases", n, n)
	commits, err := verifyAll(ctx, cfg, target, dbDir, n, work)
	row.Commits = commits
	if err != nil {
		row.RestoreError = err.Error()
	} else {
		row.RestoredOK = true
	}
	return row, nil
}

// runWriter runs `walsync bench-writer` and waits for it.
func runWriter(ctx context.Context, exe string, w WriterConfig, init bool, log io.Writer) error {
	args := []string{"bench-writer", "--dir", w.Dir, "--dbs", strconv.Itoa(w.DBs),
		"--active", strconv.Itoa(w.Active), "--rate", strconv.FormatFloat(w.Rate, 'g', -1, 64),
		"--row-bytes", strconv.Itoa(w.RowBytes), "--duration", w.Duration.String()}
	if init {
		args = append(args, "--init")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// withPrefix appends a path element to an s3:// or file:// URL.
func withPrefix(target, elem string) string {
	u := target
	q := ""
	for i := range len(u) {
		if u[i] == '?' {
			u, q = target[:i], target[i:]
			break
		}
	}
	if len(u) > 0 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	return u + "/" + elem + q
}

func countObjects(ctx context.Context, cfg Config, target string) (int, error) {
	store, err := cfg.Open(ctx, target)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, err := range store.List(ctx, "", "") {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}
