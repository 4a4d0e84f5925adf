package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
)

// globals are the flags shared by every command.
type globals struct {
	logLevel   string
	logFormat  string
	cpuProfile string
	memStats   bool
	stdout     io.Writer
	stderr     io.Writer
}

// logger returns the logger selected by the global flags, writing to
// stderr, with URLs and secrets redacted from every record.
func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch g.logFormat {
	case "text":
		h = slog.NewTextHandler(g.stderr, opts)
	case "json":
		h = slog.NewJSONHandler(g.stderr, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
	}
	return slog.New(redactHandler{h}), nil
}

func newRootCmd() *cobra.Command {
	g := &globals{stdout: os.Stdout, stderr: os.Stderr}
	root := &cobra.Command{
		Use:   "walsync",
		Short: "Continuous backup of many SQLite databases to S3 from one small process",
		Long: `walsync replicates the WAL of SQLite databases to S3 (or a local directory)
as LTX segments, in the object layout Litestream v0.5 uses, and restores them
to the latest state or to a point in time.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpu-profile", "", "write a CPU profile to this file (for debugging)")
	root.PersistentFlags().MarkHidden("cpu-profile")
	root.PersistentFlags().BoolVar(&g.memStats, "mem-stats", false, "print the Go runtime's memory classes on exit (for debugging)")
	root.PersistentFlags().MarkHidden("mem-stats")
	var stopProfile func()
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if g.cpuProfile == "" {
			return nil
		}
		f, err := os.Create(g.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
		return nil
	}
	root.PersistentPostRun = func(cmd *cobra.Command, args []string) {
		if stopProfile != nil {
			stopProfile()
		}
		if g.memStats {
			printMemoryClasses(g.stderr)
		}
	}
	root.AddCommand(
		newWatchCmd(g),
		newRestoreCmd(g),
		newSnapshotCmd(g),
		newListCmd(g),
		newStatusCmd(g),
		newBenchCmd(g),
		newVersionCmd(g),
		newBenchWriterCmd(g),
	)
	return root
}

// printMemoryClasses prints where the Go runtime's memory goes, from
// runtime/metrics' /memory/classes/ figures.
func printMemoryClasses(w io.Writer) {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") && d.Kind == metrics.KindUint64 {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	for _, s := range samples {
		fmt.Fprintf(w, "%-50s %8d KiB\n", s.Name, s.Value.Uint64()>>10)
	}
}

// oneLine flattens an error message to one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
