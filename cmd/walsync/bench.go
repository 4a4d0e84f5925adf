package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walsync/walsync/bench"
)

// benchOptions are the flags of `walsync bench`.
type benchOptions struct {
	dbs          string
	duration     time.Duration
	warmup       time.Duration
	rate         float64
	idleFraction float64
	rowBytes     int
	target       string
	asJSON       bool
}

func (o *benchOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.dbs, "dbs", "20", "database counts to measure, comma-separated (e.g. 1,5,20)")
	f.DurationVar(&o.duration, "duration", 20*time.Second, "measured window per count, while the writer runs")
	f.DurationVar(&o.warmup, "warmup", 5*time.Second, "time for the initial snapshots before the window")
	f.Float64Var(&o.rate, "rate", 10, "commits per second per active database")
	f.Float64Var(&o.idleFraction, "idle-fraction", 0, "fraction of the databases that are never written (0..1)")
	f.IntVar(&o.rowBytes, "row-bytes", 1000, "payload bytes per commit")
	f.StringVarP(&o.target, "bucket", "b", "", "target URL (default: a temporary file:// directory)")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object per row")
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

func newBenchCmd(g *globals) *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench [--dbs N[,N...]]",
		Short: "Measure walsync's memory and CPU replicating N databases, and verify the restores",
		Long: `bench creates N WAL databases, writes to them from a separate writer process,
runs walsync as a child process replicating them (to a temporary file://
target unless -b is given), samples walsync's RSS, PSS and CPU from /proc,
then restores every database and checks it equals its source. The run fails
if any restore differs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.Context(), g, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBench(ctx context.Context, g *globals, o *benchOptions) error {
	counts, err := o.counts()
	if err != nil {
		return err
	}
	if o.rate <= 0 || o.idleFraction < 0 || o.idleFraction >= 1 || o.duration <= 0 || o.rowBytes <= 0 {
		return errors.New("bench: --rate, --duration and --row-bytes must be positive and --idle-fraction in [0,1)")
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
	rows, err := bench.Run(ctx, bench.Config{
		Exe: exe, DBs: counts, Duration: o.duration, Warmup: o.warmup, Rate: o.rate,
		IdleFraction: o.idleFraction, RowBytes: o.rowBytes, Target: o.target,
		Progress: g.stderr, Logger: log, Open: openStorage,
	})
	printRows(g, rows, o.asJSON)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if !r.RestoredOK {
			return fmt.Errorf("bench: restore verification failed at %d databases: %s", r.DBs, r.RestoreError)
		}
	}
	return nil
}

func printRows(g *globals, rows []bench.Row, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		for _, r := range rows {
			enc.Encode(r)
		}
		return
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "N\ttool/mode\tRSS avg MiB\tpeak MiB\tPSS MiB\tanon MiB\tthreads\tfds\tCPU-s/min\tobjects/min\tcommits\trestored-ok\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%d\t%s/%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.2f\t%.0f\t%d\t%v\t\n", r.DBs, r.Tool, r.Mode,
			mib(r.RSSAvgKB), mib(r.RSSPeakKB), mib(r.PSSKB), mib(r.AnonKB), r.Threads, r.FDs, r.CPUPerMin, r.RequestsMin, r.Commits, r.RestoredOK)
	}
	w.Flush()
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
	return cmd
}
