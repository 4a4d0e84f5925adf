package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/walsync/walsync/internal/config"
	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/internal/redact"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

// configOptions are watch's config-file flags and what the file gave.
//
// Precedence, most specific first: a database's own setting in the file;
// a flag given on the command line; the file's top-level setting; the
// built-in default. Databases come from the file or from the command line,
// never both.
type configOptions struct {
	path        string // -c/--config
	noExpandEnv bool
	defaultPath string // config.DefaultPath; tests point it elsewhere

	cfg *config.Config // nil: no file read

	// metricsUnserved: the file sets a metrics address and watch has no
	// --metrics-addr to take it.
	metricsUnserved bool
}

// AddFlags adds -c/--config and --no-expand-env.
func (o *configOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.path, "config", "c", "", "read the target, settings and databases from this YAML file, walsync's or Litestream's (default: "+config.DefaultPath+" if it exists and no database is given)")
	f.BoolVar(&o.noExpandEnv, "no-expand-env", false, "do not expand $VAR and ${VAR} in the config file's values")
}

// loadConfig reads the config file, if watch has one, and applies it to o
// and g where flags do not override it (see configOptions). Without -c it
// reads config.DefaultPath when that exists and no database is given.
func loadConfig(flags *pflag.FlagSet, g *globals, o *watchOptions, args []string) error {
	c := &o.config
	path := c.path
	cliDBs := len(args) > 0 || o.dir != ""
	if path == "" {
		if cliDBs {
			return nil
		}
		path = c.defaultPath
		if path == "" {
			path = config.DefaultPath
		}
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	switch {
	case cliDBs:
		return errors.New("watch: give databases in the config file or on the command line, not both")
	case flags.Changed("name"), flags.Changed("pattern"):
		return errors.New("watch: --name and --pattern go with databases on the command line; in a config file, set name and pattern per database")
	}
	cfg, err := config.Read(path, config.Options{ExpandEnv: !c.noExpandEnv})
	if err != nil {
		return configError(g, err)
	}
	if err := applyConfig(flags, g, o, cfg); err != nil {
		return configError(g, err)
	}
	c.cfg = cfg
	c.metricsUnserved = cfg.MetricsAddr != "" && flags.Lookup("metrics-addr") == nil
	return nil
}

// applyConfig sets the settings of cfg that no flag overrides and checks
// what only the command can (sizes, the target URL).
func applyConfig(flags *pflag.FlagSet, g *globals, o *watchOptions, cfg *config.Config) error {
	unset := func(flag string) bool { return !flags.Changed(flag) }
	setIf := func(flag string, ok bool, apply func()) {
		if ok && unset(flag) {
			apply()
		}
	}
	setIf("bucket", cfg.Target != "", func() { o.target = cfg.Target })
	setIf("sync-interval", cfg.SyncInterval != nil, func() { o.syncInterval = *cfg.SyncInterval })
	setIf("snapshot-interval", cfg.SnapshotInterval != nil, func() { o.snapshotInterval = *cfg.SnapshotInterval })
	setIf("retention", cfg.Retention != nil, func() { o.keep.retention = *cfg.Retention })
	setIf("l0-retention", cfg.L0Retention != nil, func() { o.keep.l0Retention = *cfg.L0Retention })
	setIf("compaction-intervals", cfg.Compaction != nil, func() { o.keep.intervals = *cfg.Compaction })
	setIf("compaction-concurrency", cfg.CompactionJobs != nil, func() { o.keep.concurrency = *cfg.CompactionJobs })
	setIf("checkpoint-frames", cfg.CheckpointFrames != nil, func() { o.checkpointFrames = *cfg.CheckpointFrames })
	setIf("concurrency", cfg.Concurrency != nil, func() { o.concurrency = *cfg.Concurrency })
	setIf("spool-dir", cfg.SpoolDir != nil, func() { o.spoolDir = *cfg.SpoolDir })
	setIf("spool-max", cfg.SpoolMax != nil, func() { o.spoolMax = *cfg.SpoolMax })
	setIf("lease-ttl", cfg.LeaseTTL != nil, func() { o.leaseTTL = *cfg.LeaseTTL })
	setIf("takeover", cfg.Takeover != nil, func() { o.takeover = *cfg.Takeover })
	setIf("restore-if-missing", cfg.RestoreIfMissing != nil, func() { o.restoreIfMissing = *cfg.RestoreIfMissing })
	setIf("log-level", cfg.LogLevel != "", func() { g.logLevel = cfg.LogLevel })
	setIf("log-format", cfg.LogFormat != "", func() { g.logFormat = cfg.LogFormat })

	var errs config.Errors
	// The metrics address goes through the flag's own value, whatever
	// variable the flag is bound to.
	if fl := flags.Lookup("metrics-addr"); fl != nil && cfg.MetricsAddr != "" && !fl.Changed {
		if err := fl.Value.Set(cfg.MetricsAddr); err != nil {
			errs = append(errs, cfg.Errorf(metricsField(cfg), "%w", err))
		}
	}
	if cfg.SpoolMax != nil && unset("spool-max") {
		if _, err := parseSize(*cfg.SpoolMax); err != nil {
			errs = append(errs, cfg.Errorf("spool-max", "%w", err))
		}
	}
	switch {
	case o.target == "":
		errs = append(errs, cfg.Errorf("target", "not set: give target: in the file or -b"))
	case unset("bucket"):
		if err := checkTargetURL(o.target); err != nil {
			field := "target"
			if cfg.Litestream && len(cfg.Databases) > 0 {
				field = cfg.Databases[0].Field + ".replica"
			}
			errs = append(errs, cfg.Errorf(field, "%w", err))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if creds := cfg.Credentials; creds != (config.Credentials{}) && urlScheme(o.target) == "s3" {
		// The s3 client reads them from the environment, first in its
		// chain; a session token of another identity would not match.
		os.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
		os.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
		os.Unsetenv("AWS_SESSION_TOKEN")
	}
	return nil
}

// checkTargetURL parses a target URL without opening it.
func checkTargetURL(raw string) error {
	switch urlScheme(raw) {
	case "s3":
		_, err := s3.ParseURL(raw)
		return err
	case "file":
		_, err := dirstore.ParseURL(raw)
		return err
	}
	if redact.HasUserinfo(raw) {
		return errCredentialsInURL
	}
	return fmt.Errorf("%s: want s3://bucket[/prefix] or file:///dir", strconv.Quote(redact.URL(raw)))
}

// configError prints every invalid setting but the last on its own line
// and returns the last, which main prints: one line each.
func configError(g *globals, err error) error {
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) < 2 {
		return err
	}
	for _, e := range errs[:len(errs)-1] {
		fmt.Fprintln(g.stderr, "walsync:", redact.Text(oneLine(e)))
	}
	return errs[len(errs)-1]
}

// warn logs which file was read and its warnings, one line per key.
func (o *configOptions) warn(log *slog.Logger) {
	c := o.cfg
	if c == nil {
		return
	}
	format := "walsync"
	if c.Litestream {
		format = "litestream"
	}
	log.Info("config", "file", c.File, "format", format, "databases", len(c.Databases))
	for _, w := range c.Warnings {
		log.Warn("config: "+w.Msg, "at", fmt.Sprintf("%s:%d", w.File, w.Line), "key", w.Field)
	}
	if o.metricsUnserved {
		log.Warn("config: accepted but not applied: this build serves no metrics", "at", fmt.Sprintf("%s:%d", c.File, c.Line(metricsField(c))), "key", metricsField(c))
	}
	if c.Credentials != (config.Credentials{}) {
		if fi, err := os.Stat(c.File); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("config: the file holds credentials and other users may read it (chmod 600)", "file", c.File, "mode", fi.Mode().Perm().String())
		}
	}
}

// start adds the file's databases to r.
func (o *configOptions) start(ctx context.Context, r *replicate.Replicator) error {
	if o.cfg == nil {
		return nil
	}
	for _, db := range o.cfg.Databases {
		opts := configDBOptions(db)
		var err error
		if db.Path != "" {
			_, err = r.AddWith(ctx, db.Path, db.Name, opts)
			if errors.Is(err, replicate.ErrLeased) {
				err = fmt.Errorf("%w (stop that process, or pass --takeover if it is gone)", err)
			}
		} else if err = r.WatchDirWith(ctx, db.Dir, db.Pattern, opts); err != nil {
			err = fmt.Errorf("watch dir %s: %w", db.Dir, err)
		}
		if err != nil {
			return &config.Error{File: o.cfg.File, Line: db.Line, Field: db.Field, Err: err}
		}
	}
	return nil
}

// metricsField names the key that set the metrics address.
func metricsField(c *config.Config) string {
	if c.Litestream {
		return "addr"
	}
	return "metrics-addr"
}

// configDBOptions returns the overrides of a config file's database entry.
func configDBOptions(db config.Database) replicate.DBOptions {
	var opts replicate.DBOptions
	if v := db.SyncInterval; v != nil {
		opts.SyncInterval = *v
		if *v == 0 {
			opts.SyncInterval = replicate.SyncImmediately
		}
	}
	if v := db.SnapshotInterval; v != nil {
		opts.SnapshotInterval = *v
	}
	if v := db.Retention; v != nil {
		opts.Retention = *v
		if *v == 0 {
			opts.Retention = -1 // keep everything
		}
	}
	return opts
}
