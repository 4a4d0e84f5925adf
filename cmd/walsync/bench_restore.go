package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walsync/walsync/bench"
	"github.com/walsync/walsync/internal/redact"
)

// benchRestoreOptions are the flags of `walsync bench restore`.
type benchRestoreOptions struct {
	histories    []time.Duration
	timeScale    float64
	rate         float64
	rowBytes     int
	syncInterval time.Duration
	dbSize       string
	latency      time.Duration
	check        string
	compaction   string
	compare      string
	litestream   string
	target       string
	asJSON       bool
	watchArgs    []string
	workDir      string
}

func (o *benchRestoreOptions) AddFlags(f *pflag.FlagSet) {
	f.DurationSliceVar(&o.histories, "history", []time.Duration{0, 15 * time.Minute, 150 * time.Minute},
		"simulated history depths to measure, comma-separated (0: a fresh backup, the snapshot alone)")
	f.Float64Var(&o.timeScale, "time-scale", 60, "simulated seconds per real second: the writer's rate is multiplied and every interval of the tools divided by it")
	f.Float64Var(&o.rate, "rate", 1, "simulated commits per second")
	f.IntVar(&o.rowBytes, "row-bytes", 1000, "payload bytes per commit")
	f.MarkHidden("row-bytes")
	f.DurationVar(&o.syncInterval, "sync-interval", time.Second, "simulated sync interval of both tools")
	f.StringVar(&o.dbSize, "db-size", "16MiB", "rows written before the history, e.g. 1GiB (the snapshot every restore downloads)")
	f.DurationVar(&o.latency, "latency", 20*time.Millisecond, "added to every request of the restores, as a remote S3 endpoint's round trip")
	f.StringVar(&o.check, "integrity-check", "none", "check both tools run on the restored file: none (Litestream's default), quick or full")
	f.StringVar(&o.compaction, "compaction", bench.CompactionAuto, "give walsync watch the compaction and retention flags: auto (if its --help lists them), on or off")
	f.StringVar(&o.compare, "compare", bench.ToolLitestream, "the tool to compare with: litestream, or none")
	f.StringVar(&o.litestream, "litestream", "", "Litestream binary (default: litestream on $PATH, else ~/.cache/walsync/tools/litestream-v0.5.18/litestream)")
	f.StringVarP(&o.target, "bucket", "b", "", "target: s3://bucket[/prefix]?endpoint=... (required: the requests go through a latency proxy)")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object per row, as soon as it is measured")
	f.StringArrayVar(&o.watchArgs, "watch-arg", nil, "pass this argument to walsync watch (repeatable)")
	f.StringVar(&o.workDir, "work-dir", "", "directory for the databases and the restored files (default: the system temp dir; /dev/shm keeps the disk out of the figures)")
}

func (o *benchRestoreOptions) validate() error {
	switch {
	case o.target == "":
		return errors.New("bench restore: -b s3://bucket?endpoint=... is required")
	case len(o.histories) == 0:
		return errors.New("bench restore: --history needs at least one depth")
	case o.timeScale < 1:
		return errors.New("bench restore: --time-scale must be at least 1")
	case o.rate <= 0 || o.rowBytes <= 0 || o.syncInterval <= 0 || o.latency < 0:
		return errors.New("bench restore: --rate, --row-bytes and --sync-interval must be positive and --latency not negative")
	case o.check != "none" && o.check != "quick" && o.check != "full":
		return fmt.Errorf("bench restore: --integrity-check %q: want none, quick or full", o.check)
	case o.compare != bench.ToolLitestream && o.compare != "none":
		return fmt.Errorf("bench restore: --compare %q: want litestream or none", o.compare)
	}
	for _, h := range o.histories {
		if h < 0 {
			return fmt.Errorf("bench restore: --history %s is negative", h)
		}
	}
	return nil
}

func newBenchRestoreCmd(g *globals) *cobra.Command {
	o := &benchRestoreOptions{}
	cmd := &cobra.Command{
		Use:   "restore -b URL [--history 0,15m,150m] [--time-scale 60] [--db-size 16MiB]",
		Short: "Measure restores of backups of simulated histories, walsync next to Litestream",
		Long: `bench restore builds, for each --history depth, the backup a database
written at --rate commits/s (about 1 KB rows, after --db-size of filler)
would have after that long, with walsync and Litestream replicating their
own copy of it to their own prefix at the same time. Time runs --time-scale
times faster: the writer commits that much faster and every interval of the
tools (sync, compaction levels 30s/5m/1h, L0 retention 5m, retention and
snapshots 24h) is divided by it. A depth of 0 is a fresh backup: the
snapshot alone.

The tools are then stopped and each backup is restored by the tool's own
restore command, through a proxy that adds --latency to every request:
wall time, peak RSS (ru_maxrss), CPU, requests by type and bytes read, and
the objects left in the target. Every restored database must equal its
source.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBenchRestore(cmd.Context(), g, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBenchRestore(ctx context.Context, g *globals, o *benchRestoreOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	size, err := parseSize(o.dbSize)
	if err != nil {
		return fmt.Errorf("bench restore: --db-size: %w", err)
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := openStorage(ctx, o.target); err != nil {
		return err
	}
	var litestream string
	if o.compare == bench.ToolLitestream {
		if litestream, err = bench.FindLitestream(o.litestream); err != nil {
			return fmt.Errorf("bench restore: %w", err)
		}
	}
	progress := bench.NewProgress(redactWriter{g.stderr})
	var rows []bench.RestoreRow
	enc := json.NewEncoder(g.stdout)
	err = bench.RunRestore(ctx, bench.RestoreConfig{
		Exe: exe, Litestream: litestream, Target: o.target, Histories: o.histories, TimeScale: o.timeScale,
		Rate: o.rate, RowBytes: o.rowBytes, SyncInterval: o.syncInterval, DBSize: size, Latency: o.latency,
		IntegrityCheck: o.check, Compaction: o.compaction, WatchArgs: o.watchArgs, WorkDir: o.workDir,
		Progress: progress, Logger: log, Open: openStorage,
	}, func(r bench.RestoreRow) {
		r.Error = redact.Text(r.Error) // may quote a tool's output or a URL
		rows = append(rows, r)
		if o.asJSON {
			enc.Encode(r)
		}
	})
	progress.Done()
	if !o.asJSON {
		printRestoreTable(g, rows)
	}
	if err != nil {
		return err
	}
	var failed []string
	for _, r := range rows {
		if r.Failed() {
			failed = append(failed, fmt.Sprintf("%s at history %s", r.Tool, time.Duration(r.HistoryS*float64(time.Second))))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench restore: failed or not verified: %s", strings.Join(failed, ", "))
	}
	return nil
}

// printRestoreTable prints the rows as a table, then how much faster and
// smaller walsync's restore was at each depth, then the errors.
func printRestoreTable(g *globals, rows []bench.RestoreRow) {
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "history\ttool\tcompaction\tcommits\tDB MiB\twall s\tmax RSS MiB\tCPU s\trequests\tGET\tLIST\tHEAD\tMiB read\tobjects left\tMiB left\trestored-ok\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%.1f\t%.2f\t%.1f\t%.2f\t%d\t%d\t%d\t%d\t%.1f\t%d\t%.1f\t%v\t\n",
			simDuration(r.HistoryS), r.Tool, r.Compaction, r.Commits, float64(r.DBBytes)/(1<<20), r.WallS, mib(r.MaxRSSKB), r.CPUS,
			r.Requests, r.GETs, r.LISTs, r.HEADs, float64(r.BytesRead)/(1<<20), r.Objects, float64(r.ObjectBytes)/(1<<20), r.RestoredOK)
	}
	w.Flush()
	for _, line := range restoreRatios(rows) {
		fmt.Fprintln(g.stdout, line)
	}
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(g.stdout, "%s %s: %s\n", simDuration(r.HistoryS), r.Tool, r.Error)
		}
	}
}

// restoreRatios returns, for each depth with a verified restore by both
// tools, Litestream's wall time and peak RSS over walsync's.
func restoreRatios(rows []bench.RestoreRow) []string {
	var out []string
	for i, ws := range rows {
		if ws.Tool != bench.ToolWalsync || !ws.RestoredOK || ws.WallS <= 0 || ws.MaxRSSKB <= 0 {
			continue
		}
		for _, ls := range rows[i+1:] {
			if ls.Tool == bench.ToolLitestream && ls.HistoryS == ws.HistoryS && ls.RestoredOK {
				out = append(out, fmt.Sprintf("history %s: walsync %.2f× as fast as litestream, at %.2f× its peak RSS",
					simDuration(ws.HistoryS), ls.WallS/ws.WallS, float64(ws.MaxRSSKB)/float64(ls.MaxRSSKB)))
				break
			}
		}
	}
	return out
}

// simDuration formats a simulated depth in seconds.
func simDuration(s float64) string {
	return time.Duration(s * float64(time.Second)).String()
}
