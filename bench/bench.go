// Package bench is the harness behind `walsync bench`: for each database
// count N it creates N WAL databases, drives the active ones from a
// separate writer process, runs walsync (and, to compare, Litestream) as
// child processes replicating them, samples their memory, CPU and storage
// requests, then restores every database and checks it equals its source.
//
// Every tool gets the same load and the same kind of target. Figures of a
// tool running one process per database are summed over its processes.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/walsync/walsync/replicate"
)

// Config configures a benchmark run.
type Config struct {
	Exe          string        // walsync executable (runs `watch` and `bench-writer`)
	DBs          []int         // database counts to measure, one run per tool each
	Duration     time.Duration // measured window
	Warmup       time.Duration // before the window, with the writer already running
	Rate         float64       // commits per second per active database
	IdleFraction float64       // fraction of databases never written
	RowBytes     int           // payload bytes per commit
	Target       string        // target URL; empty: a temporary file:// directory
	Litestream   string        // Litestream binary to compare with; empty: walsync only
	WatchArgs    []string      // extra arguments of `walsync watch` (e.g. --metrics-addr)
	WorkDir      string        // parent of the temporary directories; default os.TempDir()
	Progress     *Progress     // nil: no progress
	Logger       *slog.Logger
	// Open opens a target URL, to verify walsync's restores.
	Open func(ctx context.Context, url string) (replicate.Storage, error)
}

// Row is the result of one tool/mode at one database count.
type Row struct {
	Tool           string             `json:"tool"`
	Mode           string             `json:"mode"`
	DBs            int                `json:"dbs"`
	ActiveDBs      int                `json:"active_dbs"`
	Procs          int                `json:"procs"`
	RSSAvgKB       int64              `json:"rss_avg_kb"`  // VmRSS, window average
	RSSPeakKB      int64              `json:"rss_peak_kb"` // max of VmHWM and the samples
	PSSKB          int64              `json:"pss_kb"`      // Pss, window average
	AnonKB         int64              `json:"rss_anon_kb"` // RssAnon, window average
	Threads        int64              `json:"threads"`     // maximum
	FDs            int                `json:"fds"`         // maximum
	CPUPerMin      float64            `json:"cpu_s_per_min"`
	RequestsMin    float64            `json:"requests_per_min"`
	RequestUnit    string             `json:"request_unit"` // "requests" (S3, counted by a proxy) or "objects" (created)
	RequestsByType map[string]float64 `json:"requests_per_min_by_type,omitempty"`
	WindowS        float64            `json:"window_s"`
	Rate           float64            `json:"rate"` // commits per second per active database
	Commits        int64              `json:"commits"`
	RestoredOK     bool               `json:"restored_ok"`
	Skipped        bool               `json:"skipped,omitempty"`
	Error          string             `json:"error,omitempty"`

	// Replication lag of the commits made in the window: from the
	// writer's commit to the earliest moment the target could restore a
	// state holding it (docs/benchmarks.md, "Replication lag").
	LagCommits    int64   `json:"lag_commits"`     // commits measured (durable before the stop)
	LagNotDurable int64   `json:"lag_not_durable"` // commits of the window not durable when the tool was told to stop
	LagP50MS      float64 `json:"lag_p50_ms"`
	LagP99MS      float64 `json:"lag_p99_ms"`
	LagMaxMS      float64 `json:"lag_max_ms"`
	LagClock      string  `json:"lag_clock,omitempty"` // how durability was timed: "proxy" (S3) or "inotify" (file://)
	LagError      string  `json:"lag_error,omitempty"` // why the lag was not measured; does not fail the row
}

// Failed reports whether the row is a run that failed: a restore that
// differs from its source, or a tool that crashed or did not stop cleanly.
// A skipped row has not failed.
func (r Row) Failed() bool { return !r.Skipped && (!r.RestoredOK || r.Error != "") }

// Run measures each tool at each database count in cfg.DBs, calling emit
// with every row as soon as it is measured. A tool that fails (or crashes)
// gives a row with RestoredOK false and the error; the run goes on. Run
// returns an error only if it cannot run at all or ctx ends.
func Run(ctx context.Context, cfg Config, emit func(Row)) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if emit == nil {
		emit = func(Row) {}
	}
	maxN := 0
	for _, n := range cfg.DBs {
		maxN = max(maxN, n)
	}
	perDB := 4 // walsync holds 2 descriptors per database; the writer up to 3 per active one
	if cfg.Litestream != "" {
		perDB = 8 // Litestream: the database, its WAL and SHM, twice (file + SQLite connection)
	}
	lim, err := raiseNoFile(uint64(perDB*maxN + 1024))
	cfg.Progress.Linef("open files limit %d", lim)
	if err != nil {
		cfg.Progress.Notef("warning: %v", err)
	}

	work, err := os.MkdirTemp(cfg.WorkDir, "walsync-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tg, err := newTargets(cfg, work)
	if err != nil {
		return err
	}
	defer tg.Close()
	cfg.Progress.Linef("target %s", tg.describe())

	for _, n := range cfg.DBs {
		for _, tl := range tools(&cfg) {
			row, err := runTool(ctx, &cfg, tg, tl, n, work)
			if err != nil {
				return err
			}
			emit(row)
		}
	}
	return nil
}

// run is one tool/mode at one database count.
type run struct {
	cfg    *Config
	n      int
	active int
	dir    string // holds the databases, logs and restores of this run
	dbDir  string
	tgt    runTarget
	store  replicate.Storage // walsync's target, opened for verification
	prefix string            // progress prefix

	// For the replication lag, set by measure.
	commitLog   string               // the writer's commit log
	windowStart time.Time            // start of the measured window
	stopAt      time.Time            // when the tool was told to stop
	durable     map[string]time.Time // when each object was first durable, by key
	clockName   string               // the durable clock's name
	lagErr      error                // why the lag cannot be measured
}

// runTool measures tl at n databases. Its error is ctx's; any other
// failure is reported in the row.
func runTool(ctx context.Context, cfg *Config, tg *targets, tl tool, n int, work string) (Row, error) {
	active := n - int(float64(n)*cfg.IdleFraction)
	label := fmt.Sprintf("%s-%s-n%d", tl.name, tl.mode, n)
	prefix := fmt.Sprintf("dbs=%d %s", n, tl.label())
	r := &run{cfg: cfg, n: n, active: active, dir: filepath.Join(work, label), tgt: tg.forRun(label), prefix: prefix}
	r.dbDir = filepath.Join(r.dir, "dbs")
	r.commitLog = filepath.Join(r.dir, "commits.log")
	row := Row{Tool: tl.name, Mode: tl.mode, DBs: n, ActiveDBs: active, Rate: cfg.Rate, RequestUnit: r.tgt.count.unit()}
	if why := tl.skip(n); why != "" {
		row.Skipped, row.Error = true, why
		cfg.Progress.Linef("%s: %s", prefix, why)
		return row, nil
	}
	defer func() {
		os.RemoveAll(r.dir)
		if tg.temporary {
			os.RemoveAll(filepath.Join(tg.file, label))
		}
	}()
	err := r.measure(ctx, tl, &row)
	if ctx.Err() != nil {
		return row, ctx.Err()
	}
	var stopErr *stopError
	if err == nil || errors.As(err, &stopErr) {
		cfg.Progress.Linef("%s: restoring and verifying %d databases", prefix, n)
		var verr error
		row.Commits, verr = r.verify(ctx, tl)
		if ctx.Err() != nil {
			return row, ctx.Err()
		}
		row.RestoredOK = verr == nil
		err = errors.Join(err, verr)
		cfg.Progress.Linef("%s: measuring the replication lag", prefix)
		if lerr := r.measureLag(ctx, &row); lerr != nil {
			if ctx.Err() != nil {
				return row, ctx.Err()
			}
			row.LagError = oneLine(lerr)
			cfg.Progress.Notef("%s: lag not measured: %s", prefix, row.LagError)
		}
	}
	if err != nil {
		row.Error = oneLine(err)
		cfg.Progress.Notef("%s: FAILED: %s", prefix, row.Error)
	} else {
		lag := "lag not measured"
		if row.LagError == "" {
			lag = fmt.Sprintf("lag p99 %.0f ms, max %.0f ms, %d commits not durable before the stop",
				row.LagP99MS, row.LagMaxMS, row.LagNotDurable)
		}
		cfg.Progress.Linef("%s: done, RSS %.1f MiB, CPU %.2f s/min, %.0f %s/min, %d commits restored, %s",
			prefix, mib(row.RSSAvgKB), row.CPUPerMin, row.RequestsMin, row.RequestUnit, row.Commits, lag)
	}
	return row, nil
}

// mib converts KiB to MiB.
func mib(kb int64) float64 { return float64(kb) / 1024 }

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

// oneLine flattens an error message to one line of at most 400 bytes.
func oneLine(err error) string {
	var b []byte
	for _, c := range []byte(err.Error()) {
		if c == '\n' || c == '\r' || c == '\t' {
			c = ' '
		}
		b = append(b, c)
	}
	if len(b) > 400 {
		b = append(b[:400], "..."...)
	}
	return string(b)
}

// errExited is a tool that exited before the end of the window.
var errExited = errors.New("exited during the run")
