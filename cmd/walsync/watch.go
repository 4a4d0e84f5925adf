package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walsync/walsync/internal/memtrim"
	"github.com/walsync/walsync/internal/redact"
	"github.com/walsync/walsync/replicate"
)

// watchOptions are the flags of `walsync watch`.
type watchOptions struct {
	config           configOptions // -c FILE (config.go)
	target           string
	name             string
	dir              string
	pattern          string
	syncInterval     time.Duration
	snapshotInterval time.Duration
	checkpointFrames int
	concurrency      int
	spoolDir         string
	spoolMax         string
	leaseTTL         time.Duration
	takeover         bool
	keepCodePages    bool
	restoreIfMissing bool             // restoremissing.go
	exec             string           // --exec: the application's command line
	execArgv         []string         // the application's argv, from --exec or after "--" (exec.go)
	serve            serveOptions     // metrics, health, heartbeat (serve.go)
	keep             retentionOptions // compaction and retention (retention.go)
}

func (o *watchOptions) AddFlags(f *pflag.FlagSet) {
	o.config.AddFlags(f)
	f.StringVarP(&o.target, "bucket", "b", "", "target URL: s3://bucket[/prefix] or file:///dir")
	f.StringVar(&o.name, "name", "", "name of the database in the target (one DB only; default: its absolute path without the leading /)")
	f.StringVar(&o.dir, "dir", "", "also replicate every database under DIR whose file name matches --pattern, including new ones")
	f.StringVar(&o.pattern, "pattern", "*.db", "file name pattern for --dir")
	f.DurationVar(&o.syncInterval, "sync-interval", replicate.DefaultSyncInterval, "gather each database's changes for this long into one segment (0: upload at once)")
	f.DurationVar(&o.snapshotInterval, "snapshot-interval", replicate.DefaultSnapshotInterval, "take a full snapshot of an active database this often")
	f.IntVar(&o.checkpointFrames, "checkpoint-frames", replicate.DefaultCheckpointFrames, "restart the WAL once it holds this many replicated frames")
	f.IntVar(&o.concurrency, "concurrency", replicate.DefaultConcurrency, "databases uploaded at the same time")
	f.StringVar(&o.spoolDir, "spool-dir", "", "directory for segments too large to keep in memory (default: the system temp dir)")
	f.StringVar(&o.spoolMax, "spool-max", "", "disk space for changes the target does not take during an outage, e.g. 2GiB (default: a quarter of the spool dir's free space)")
	f.DurationVar(&o.leaseTTL, "lease-ttl", replicate.DefaultLeaseTTL, "a database's lease in the target expires this long after its last upload; another process may then take it over")
	f.BoolVar(&o.takeover, "takeover", false, "take over databases whose lease another process holds (when that process is known to be gone)")
	f.BoolVar(&o.keepCodePages, "keep-code-pages", false, "do not release start-up code pages after the first sync (for measurements)")
	f.MarkHidden("keep-code-pages")
	f.BoolVar(&o.restoreIfMissing, "restore-if-missing", false, "before watching, restore from the target each given database that does not exist locally, and each backup --dir would name that is missing under it (one without a backup is replicated once created)")
	f.StringVar(&o.exec, "exec", "", "run this command (split into words as a shell would, no shell features) as a child, passing signals on; when it exits, upload what is committed and exit with its status (or give the command after --)")
	o.serve.AddFlags(f)
	o.keep.AddFlags(f)
}

func (o *watchOptions) validate(args []string) error {
	switch {
	case len(args) == 0 && o.dir == "" && o.config.cfg == nil:
		return errors.New("watch: give at least one database, --dir or -c FILE")
	case o.name != "" && len(args) != 1:
		return errors.New("watch: --name needs exactly one database")
	case o.syncInterval < 0:
		return errors.New("watch: --sync-interval must not be negative")
	case o.snapshotInterval <= 0:
		return errors.New("watch: --snapshot-interval must be positive")
	case o.checkpointFrames <= 0:
		return errors.New("watch: --checkpoint-frames must be positive")
	case o.concurrency <= 0:
		return errors.New("watch: --concurrency must be positive")
	case o.leaseTTL < time.Minute:
		return errors.New("watch: --lease-ttl must be at least 1m")
	}
	if _, err := parseSize(o.spoolMax); err != nil {
		return fmt.Errorf("watch: --spool-max: %w", err)
	}
	if err := o.keep.validate(); err != nil {
		return err
	}
	return o.serve.validate()
}

// replicateOptions maps the validated flags to the library's options.
// --sync-interval 0 means "upload at once", which the library spells
// [replicate.SyncImmediately] (its zero value selects the default).
func (o *watchOptions) replicateOptions(log *slog.Logger) replicate.Options {
	syncInterval := o.syncInterval
	if syncInterval == 0 {
		syncInterval = replicate.SyncImmediately
	}
	spoolMax, _ := parseSize(o.spoolMax) // validated
	opts := replicate.Options{
		SyncInterval:     syncInterval,
		SnapshotInterval: o.snapshotInterval,
		CheckpointFrames: o.checkpointFrames,
		Concurrency:      o.concurrency,
		SpoolDir:         o.spoolDir,
		SpoolMax:         spoolMax,
		LeaseTTL:         o.leaseTTL,
		Takeover:         o.takeover,
		Logger:           log,
	}
	o.keep.apply(&opts)
	return opts
}

func newWatchCmd(g *globals) *cobra.Command {
	o := &watchOptions{}
	cmd := &cobra.Command{
		Use:   "watch DB... -b URL",
		Short: "Replicate databases written by any process until interrupted",
		Long: `watch replicates the given SQLite databases (WAL mode) and, with --dir, every
matching database in a directory tree, including ones created later. It
wakes up on inotify events, uploads one segment per database per
--sync-interval of activity, and nothing for idle databases. On SIGINT or
SIGTERM it uploads what is committed and exits 0.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The command after "--" first (exec mode), so that
			// "-- app" alone still reads the default config file.
			args, err := o.takeExecArgs(args, cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			if err := loadConfig(cmd.Flags(), g, o, args); err != nil {
				return err
			}
			return runWatch(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runWatch(ctx context.Context, g *globals, o *watchOptions, args []string) error {
	if err := o.validate(args); err != nil {
		return err
	}
	// One P unless the user chose: watch is I/O-bound (blocking file I/O
	// and network waits do not hold a P), and each P keeps its own cache
	// of partly used heap spans. Measured: less RSS and less CPU
	// (docs/decisions.md).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	o.config.warn(log)
	store, err := openStorage(ctx, o.target)
	if err != nil {
		return err
	}
	args, missing, err := o.restoreMissing(ctx, store, args, log)
	if err != nil {
		return err
	}
	r := replicate.New(store, o.replicateOptions(log))
	for _, p := range args {
		if _, err := r.Add(ctx, p, o.name); err != nil {
			r.Close()
			if errors.Is(err, replicate.ErrLeased) {
				return fmt.Errorf("%w (stop that process, or pass --takeover if it is gone)", err)
			}
			return err
		}
	}
	if o.dir != "" {
		if err := r.WatchDir(ctx, o.dir, o.pattern); err != nil {
			r.Close()
			return fmt.Errorf("watch --dir %s: %w", o.dir, err)
		}
	}
	if err := o.config.start(ctx, r); err != nil {
		r.Close()
		return err
	}
	srv, err := startServing(ctx, &o.serve, r, log)
	if err != nil {
		r.Close()
		return err
	}
	defer srv.close()
	log.Info("watching", "databases", len(r.DBs()), "target", redact.URL(o.target))
	var app *child // exec mode: the application, started once replication runs
	if len(o.execArgv) > 0 {
		if app, err = startChild(ctx, o.execArgv, g, log); err != nil {
			r.Close()
			return err
		}
		defer app.close()
	}
	ctx = app.context(ctx)
	defer waitCreated(ctx, r, missing, log)()
	trimCtx, stopTrim := context.WithCancel(ctx)
	trimmed := make(chan struct{})
	go func() {
		defer close(trimmed)
		if !o.keepCodePages {
			releaseStartupPages(trimCtx, r, log)
		}
	}()
	err = r.Run(ctx)
	stopTrim()
	<-trimmed
	if err != nil {
		return app.result(err)
	}
	log.Info("stopped", "stats", fmt.Sprintf("%+v", r.Stats()))
	return app.result(nil)
}

// releaseStartupPages waits until the databases found at start-up are
// replicated, then gives back the executable's pages that only start-up
// touched (see internal/memtrim). It costs one madvise call; whatever runs
// later faults its pages back in from the page cache.
func releaseStartupPages(ctx context.Context, r *replicate.Replicator, log *slog.Logger) {
	select {
	case <-time.After(startupSettle):
	case <-ctx.Done():
		return
	}
	// A failed Sync is the scheduler's to report and retry; start-up is
	// over either way.
	_ = r.Sync(ctx)
	if ctx.Err() != nil {
		return
	}
	st, err := memtrim.ReleaseCode()
	if err != nil {
		log.Warn("release start-up code pages", "err", err)
		return
	}
	log.Debug("released start-up code pages", "mappings", st.Mappings, "resident_bytes", st.Resident)
}

// startupSettle is how long watch waits after start before its start-up
// Sync: long enough for the scheduler to be running and the first inotify
// events to be consumed.
const startupSettle = 5 * time.Second
