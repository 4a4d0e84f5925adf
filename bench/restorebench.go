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

// RestoreConfig configures a restore benchmark ([RunRestore]).
//
// Each history is simulated faster than real time by TimeScale: the writer
// commits at Rate×TimeScale per real second for History/TimeScale, and
// every interval of the tools (sync, compaction levels, retentions,
// snapshots) is divided by TimeScale, so that the backup left in the
// target has the shape a real history of that depth would leave.
type RestoreConfig struct {
	Exe        string // walsync executable (watch, restore, bench-writer)
	Litestream string // Litestream binary to compare with; empty: walsync only
	// Target is an s3:// URL with an endpoint: the requests go through the
	// bench's proxy, which counts them and adds Latency during restores.
	Target       string
	Histories    []time.Duration // simulated depths; 0 is the snapshot alone
	TimeScale    float64         // simulated seconds per real second (≥ 1)
	Rate         float64         // simulated commits per second
	RowBytes     int             // payload bytes per commit
	SyncInterval time.Duration   // simulated sync interval of both tools
	DBSize       int64           // bytes of rows written before the history
	Latency      time.Duration   // added to every request during the restores
	// IntegrityCheck is the check both tools run on the restored file:
	// none (Litestream's default), quick or full.
	IntegrityCheck string
	// Compaction says whether walsync watch is given the compaction and
	// retention flags (--compaction-intervals, --l0-retention,
	// --retention): CompactionAuto when its --help lists them.
	Compaction string
	WatchArgs  []string // extra arguments of walsync watch
	WorkDir    string   // parent of the temporary directories; default os.TempDir()
	Progress   *Progress
	Logger     *slog.Logger
	// Open opens a target URL, to list what each tool left in it.
	Open func(ctx context.Context, url string) (replicate.Storage, error)
}

// Values of RestoreConfig.Compaction.
const (
	CompactionAuto = "auto"
	CompactionOn   = "on"
	CompactionOff  = "off"
)

// Scenarios of a RestoreRow.
const (
	ScenarioSnapshot = "snapshot" // a fresh backup, no history
	ScenarioHistory  = "history"
)

// RestoreRow is the restore of one tool's backup of one history.
type RestoreRow struct {
	Tool        string  `json:"tool"`
	Scenario    string  `json:"scenario"`
	HistoryS    float64 `json:"history_s"` // simulated
	TimeScale   float64 `json:"time_scale"`
	Rate        float64 `json:"rate"`            // simulated commits per second
	SyncS       float64 `json:"sync_interval_s"` // simulated
	Compaction  bool    `json:"compaction"`      // compaction and retention on (always for Litestream)
	Commits     int64   `json:"commits"`         // commits of the history
	DBBytes     int64   `json:"db_bytes"`        // size of the restored database
	LatencyMS   float64 `json:"latency_ms"`
	Check       string  `json:"integrity_check"`
	WallS       float64 `json:"wall_s"`       // restore process, start to exit
	MaxRSSKB    int64   `json:"max_rss_kb"`   // ru_maxrss of the restore process
	CPUS        float64 `json:"cpu_s"`        // its user+system CPU
	Requests    int64   `json:"requests"`     // every request of the restore
	GETs        int64   `json:"gets"`         // object reads
	LISTs       int64   `json:"lists"`        // list pages
	HEADs       int64   `json:"heads"`        // object heads
	BytesRead   int64   `json:"bytes_read"`   // response bodies
	Objects     int64   `json:"objects"`      // left in the tool's target
	ObjectBytes int64   `json:"object_bytes"` // their total size
	RestoredOK  bool    `json:"restored_ok"`  // equals the source's end state
	Error       string  `json:"error,omitempty"`
	SetupS      float64 `json:"setup_s"` // real time to build the backups (for planning runs)
}

// Failed reports whether the tool failed or its restore differs from the
// source.
func (r RestoreRow) Failed() bool { return !r.RestoredOK || r.Error != "" }

// quietFor is how long a tool must have made no request (after storing
// its first LTX file, and after the history) before it is stopped.
const quietFor = 3 * time.Second

// settleTimeout bounds the wait for a tool to store its backup and go
// quiet.
const settleTimeout = 30 * time.Minute

// RunRestore builds each history of cfg.Histories with every tool (all
// tools at once, each on its own copy of the database, to its own prefix),
// stops them, then restores each tool's backup in turn through the
// latency proxy, calling emit with one row per tool and history. A tool
// that fails gives a row with the error; RunRestore returns an error only
// if it cannot run at all or ctx ends.
func RunRestore(ctx context.Context, cfg RestoreConfig, emit func(RestoreRow)) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if emit == nil {
		emit = func(RestoreRow) {}
	}
	if cfg.TimeScale < 1 || cfg.Rate <= 0 || cfg.RowBytes <= 0 || cfg.SyncInterval <= 0 {
		return errors.New("bench: time scale ≥ 1, rate, row bytes and sync interval > 0 are required")
	}
	work, err := os.MkdirTemp(cfg.WorkDir, "walsync-restorebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tg, err := newTargets(Config{Target: cfg.Target, Open: cfg.Open}, work)
	if err != nil {
		return err
	}
	defer tg.Close()
	if tg.proxy == nil {
		return fmt.Errorf("bench: restore needs an s3:// target with an endpoint (its requests go through a latency proxy), not %q", cfg.Target)
	}
	cfg.Progress.Linef("target %s", tg.describe())
	compaction, err := walsyncCompaction(ctx, cfg.Exe, cfg.Compaction)
	if err != nil {
		return err
	}
	if !compaction {
		cfg.Progress.Linef("walsync watch runs without the compaction flags (%s)", cfg.Compaction)
	}
	for _, h := range cfg.Histories {
		d := &depth{cfg: &cfg, tg: tg, history: h, compaction: compaction}
		if err := d.run(ctx, work, emit); err != nil {
			return err
		}
	}
	return nil
}

// scale returns the real duration of the simulated duration d.
func (c *RestoreConfig) scale(d time.Duration) time.Duration {
	return max(time.Duration(float64(d)/c.TimeScale), time.Millisecond)
}

// depth is the run of one history.
type depth struct {
	cfg        *RestoreConfig
	tg         *targets
	history    time.Duration
	compaction bool // walsync gets the compaction flags
	dir, dbDir string
	fillRows   int64
	prefix     string // progress prefix
}

// run builds the history with every tool, then restores and measures
// each. Its error is ctx's or one that stops the whole bench.
func (d *depth) run(ctx context.Context, work string, emit func(RestoreRow)) error {
	label := fmt.Sprintf("restore-h%ds", int64(d.history.Seconds()))
	d.dir = filepath.Join(work, label)
	d.dbDir = filepath.Join(d.dir, "dbs")
	d.prefix = fmt.Sprintf("history %s", d.history)
	defer os.RemoveAll(d.dir)
	var reps []*replica
	for i, t := range restoreTools(d.cfg) {
		rl := label + "-" + t.name
		reps = append(reps, &replica{tool: t, db: i, label: rl, tgt: d.tg.forRun(rl),
			row: RestoreRow{Tool: t.name, Scenario: ScenarioHistory, HistoryS: d.history.Seconds(),
				TimeScale: d.cfg.TimeScale, Rate: d.cfg.Rate, SyncS: d.cfg.SyncInterval.Seconds(),
				Compaction: t.name == ToolLitestream || d.compaction, LatencyMS: float64(d.cfg.Latency) / 1e6,
				Check: d.cfg.IntegrityCheck}})
		if d.history == 0 {
			reps[i].row.Scenario = ScenarioSnapshot
		}
	}
	start := time.Now()
	if err := d.build(ctx, reps); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, r := range reps {
			r.row.Error = oneLine(err)
			emit(r.row)
		}
		d.cfg.Progress.Notef("%s: FAILED: %s", d.prefix, oneLine(err))
		return nil
	}
	setup := time.Since(start).Seconds()
	for _, r := range reps {
		r.row.SetupS = setup
		d.measure(ctx, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.row.Error != "" {
			d.cfg.Progress.Notef("%s %s: FAILED: %s", d.prefix, r.tool.name, r.row.Error)
		} else {
			d.cfg.Progress.Linef("%s %s: restored in %.2f s, max RSS %.1f MiB, %d GETs, %.1f MiB read, %d objects left",
				d.prefix, r.tool.name, r.row.WallS, mib(r.row.MaxRSSKB), r.row.GETs, float64(r.row.BytesRead)/(1<<20), r.row.Objects)
		}
		emit(r.row)
	}
	return nil
}

// replica is one tool's backup of the history's database.
type replica struct {
	tool    restoreTool
	db      int    // index of its database
	label   string // of its location in the target
	tgt     runTarget
	row     RestoreRow
	act     *activity
	log     *os.File
	grp     *group
	srcHash string
	srcRows int64
	stopErr error // the tool did not stop cleanly
}
