package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walsync/walsync/bench"
	"github.com/walsync/walsync/internal/redact"
)

// benchOptions are the flags of `walsync bench`.
type benchOptions struct {
	dbs          string
	duration     time.Duration
	warmup       time.Duration
	rate         float64
	idleFraction float64
	rowBytes     int
	compare      string
	litestream   string
	target       string
	asJSON       bool
	plot         string
	fromJSON     []string
	watchArgs    []string
}

func (o *benchOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.dbs, "dbs", "20", "database counts to measure, comma-separated (e.g. 1,5,20)")
	f.DurationVar(&o.duration, "duration", 20*time.Second, "measured window per tool and count")
	f.DurationVar(&o.warmup, "warmup", 5*time.Second, "time before the window, with the writer running (initial snapshots)")
	f.Float64Var(&o.rate, "rate", 10, "commits per second per active database")
	f.Float64Var(&o.idleFraction, "idle-fraction", 0, "fraction of the databases that are never written (0..1)")
	f.IntVar(&o.rowBytes, "row-bytes", 1000, "payload bytes per commit")
	f.MarkHidden("row-bytes")
	f.StringVar(&o.compare, "compare", "", "also measure another tool under the same load: litestream (one process per database, and one process for all)")
	f.StringVar(&o.litestream, "litestream", "", "Litestream binary for --compare (default: litestream on $PATH, else ~/.cache/walsync/tools/litestream-v0.5.18/litestream)")
	f.StringVarP(&o.target, "bucket", "b", "", "target URL: s3://bucket[/prefix][?endpoint=...] or file:///dir (default: a temporary file:// directory)")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object per row, as soon as it is measured")
	f.StringVar(&o.plot, "plot", "", "write a PNG chart of RSS against the number of databases to this file")
	f.StringSliceVar(&o.fromJSON, "from-json", nil, "measure nothing: print the table (and --plot) of rows saved with --json in these files")
	f.MarkHidden("from-json")
	f.StringArrayVar(&o.watchArgs, "watch-arg", nil, "pass this argument to walsync watch, e.g. --watch-arg=--metrics-addr=127.0.0.1:9752 (repeatable)")
}

func (o *benchOptions) counts() ([]int, error) {
	var out []int
	for s := range strings.SplitSeq(o.dbs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bench: --dbs %q: want positive numbers separated by commas", o.dbs)
		}
		out = append(out, n)
	}
	return out, nil
}

func (o *benchOptions) validate() error {
	switch {
	case o.rate <= 0 || o.duration <= 0 || o.rowBytes <= 0 || o.warmup < 0:
		return errors.New("bench: --rate, --duration and --row-bytes must be positive and --warmup not negative")
	case o.idleFraction < 0 || o.idleFraction >= 1:
		return errors.New("bench: --idle-fraction must be in [0,1)")
	case o.compare != "" && o.compare != bench.ToolLitestream:
		return fmt.Errorf("bench: --compare %q: the only tool to compare with is litestream", o.compare)
	case o.litestream != "" && o.compare == "":
		return errors.New("bench: --litestream needs --compare litestream")
	case o.plot != "" && !strings.HasSuffix(strings.ToLower(o.plot), ".png"):
		return fmt.Errorf("bench: --plot %q: want a .png file name", o.plot)
	}
	return nil
}

func newBenchCmd(g *globals) *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench [--dbs N[,N...]] [--compare litestream] [-b URL]",
		Short: "Measure walsync's memory, CPU and requests replicating N databases (optionally next to Litestream), and verify the restores",
		Long: `bench creates N WAL databases, writes to the first N*(1-F) of them from a
separate writer process at --rate commits/s each (about 1 KB rows), runs
walsync as a child process replicating them (to a temporary file:// target
unless -b is given), samples its RSS, PSS, CPU, threads and descriptors
from /proc every second over the window, then stops it (SIGTERM), restores
every database and checks its rows equal the source's.

It also measures the replication lag of every commit of the window: from
the moment SQLite acknowledged it in the writer to the moment the target
could restore it (an S3 PUT answered, timed by the proxy; a file named in a
file:// target, timed with inotify), as p50, p99 and max, with the commits
not durable when the tool was told to stop (5 s after the last commit)
counted apart.

With --compare litestream, Litestream runs next, under the same load and
the same kind of target: one process per database (figures summed), then
one process for all databases. On an s3:// target with an endpoint, a
counting proxy in front of it counts every tool's requests by type; on a
file:// target the objects created are counted instead.

The run exits non-zero if any restore differs from its source or a tool
failed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.Context(), g, o)
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.AddCommand(newBenchRestoreCmd(g))
	return cmd
}

func runBench(ctx context.Context, g *globals, o *benchOptions) error {
	if len(o.fromJSON) > 0 {
		return replayBench(g, o)
	}
	counts, err := o.counts()
	if err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if o.target != "" {
		if _, err := openStorage(ctx, o.target); err != nil {
			return err
		}
	}
	var litestream string
	if o.compare == bench.ToolLitestream {
		if litestream, err = bench.FindLitestream(o.litestream); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	progress := bench.NewProgress(redactWriter{g.stderr})
	var rows []bench.Row
	enc := json.NewEncoder(g.stdout)
	err = bench.Run(ctx, bench.Config{
		Exe: exe, DBs: counts, Duration: o.duration, Warmup: o.warmup, Rate: o.rate,
		IdleFraction: o.idleFraction, RowBytes: o.rowBytes, Target: o.target, Litestream: litestream, WatchArgs: o.watchArgs,
		Progress: progress, Logger: log, Open: openStorage,
	}, func(r bench.Row) {
		// A row's errors may quote a tool's output or a request's URL.
		r.Error, r.LagError = redact.Text(r.Error), redact.Text(r.LagError)
		rows = append(rows, r)
		if o.asJSON {
			enc.Encode(r)
		}
	})
	progress.Done()
	if !o.asJSON {
		printBenchTable(g, rows)
	}
	if o.plot != "" && len(rows) > 0 {
		if perr := bench.WritePlot(o.plot, rows); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	if err != nil {
		return err
	}
	var failed []string
	for _, r := range rows {
		if r.Failed() {
			failed = append(failed, fmt.Sprintf("%s/%s at %d databases", r.Tool, r.Mode, r.DBs))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: failed or not verified: %s", strings.Join(failed, ", "))
	}
	return nil
}

// replayBench prints the table and the chart of rows saved with --json.
func replayBench(g *globals, o *benchOptions) error {
	var rows []bench.Row
	for _, path := range o.fromJSON {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(f)
		for {
			var r bench.Row
			if err := dec.Decode(&r); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				f.Close()
				return fmt.Errorf("bench: %s: %w", path, err)
			}
			rows = append(rows, r)
		}
		f.Close()
	}
	printBenchTable(g, rows)
	if o.plot != "" {
		return bench.WritePlot(o.plot, rows)
	}
	return nil
}

// printBenchTable prints the rows as a table, then the error of each row
// that has one.
func printBenchTable(g *globals, rows []bench.Row) {
	unit := "requests"
	for _, r := range rows {
		if r.RequestUnit == "objects" && !r.Skipped {
			unit = "objects"
		}
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "N\trate\ttool/mode\tprocs\tRSS avg MiB\tpeak MiB\tPSS MiB\tanon MiB\tthreads\tfds\tCPU-s/min\t%s/min\tcommits\trestored-ok\tlag p50 ms\tp99 ms\tmax ms\tnot durable\t\n", unit)
	for _, r := range rows {
		if r.Skipped || r.WindowS == 0 {
			ok := "false"
			if r.Skipped {
				ok = "skipped"
			}
			fmt.Fprintf(w, "%d\t%s\t%s/%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t-\t-\t-\t-\t\n", r.DBs, rate(r), r.Tool, r.Mode, ok)
			continue
		}
		fmt.Fprintf(w, "%d\t%s\t%s/%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.2f\t%.0f\t%d\t%v\t%s\t\n", r.DBs, rate(r), r.Tool, r.Mode, r.Procs,
			mib(r.RSSAvgKB), mib(r.RSSPeakKB), mib(r.PSSKB), mib(r.AnonKB), r.Threads, r.FDs, r.CPUPerMin, r.RequestsMin, r.Commits, r.RestoredOK,
			lagCells(r))
	}
	w.Flush()
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(g.stdout, "%d %s/%s: %s\n", r.DBs, r.Tool, r.Mode, r.Error)
		}
		if r.LagError != "" {
			fmt.Fprintf(g.stdout, "%d %s/%s: lag not measured: %s\n", r.DBs, r.Tool, r.Mode, r.LagError)
		}
	}
}

// rate returns the commits per second per active database of a row, "-"
// for rows saved before rows carried it.
func rate(r bench.Row) string {
	if r.Rate == 0 {
		return "-"
	}
	return strconv.FormatFloat(r.Rate, 'g', -1, 64)
}

// lagCells returns the lag columns of a row, tab-separated: p50, p99 and
// max in milliseconds and the commits not durable before the stop; dashes
// if the lag was not measured.
func lagCells(r bench.Row) string {
	if r.LagClock == "" || r.LagError != "" {
		return "-\t-\t-\t-"
	}
	if r.LagCommits == 0 {
		return fmt.Sprintf("-\t-\t-\t%d", r.LagNotDurable)
	}
	return fmt.Sprintf("%.0f\t%.0f\t%.0f\t%d", r.LagP50MS, r.LagP99MS, r.LagMaxMS, r.LagNotDurable)
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

func newBenchWriterCmd(g *globals) *cobra.Command {
	var c bench.WriterConfig
	cmd := &cobra.Command{
		Use:    "bench-writer",
		Short:  "Load generator run by bench (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c.Ready = g.stdout
			return bench.RunWriter(cmd.Context(), c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Dir, "dir", "", "directory of the databases")
	f.IntVar(&c.DBs, "dbs", 1, "number of databases")
	f.IntVar(&c.Active, "active", 1, "number of databases written")
	f.Float64Var(&c.Rate, "rate", 10, "commits per second per active database")
	f.IntVar(&c.RowBytes, "row-bytes", 1000, "payload bytes per commit")
	f.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to write")
	f.BoolVar(&c.Init, "init", false, "create the databases and exit")
	f.StringVar(&c.CommitLog, "commit-log", "", "file to record each commit in (database index, row id, Unix nanoseconds)")
	return cmd
}
