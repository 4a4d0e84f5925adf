package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/ncruces/go-sqlite3/vfs/adiantum" // --vfs adiantum
	_ "github.com/ncruces/go-sqlite3/vfs/xts"      // --vfs xts
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/replicate"
)

// restoreOptions are the flags of `walsync restore`.
type restoreOptions struct {
	target    string
	output    string
	timestamp string
	txid      string
	force     bool
	check     string
	vfs       string
	keyFile   string
	asJSON    bool

	ifDBNotExists   bool // --if-db-not-exists: an existing output is a skip
	ifReplicaExists bool // --if-replica-exists: no backup is a skip
	download        int  // --download-concurrency: downloads per restore

	// --all (restore_all.go)
	all         bool
	prefix      string
	pattern     string
	concurrency int // databases restored at a time
}

// Exit statuses of `walsync restore` besides 0 (restored, or skipped by
// an --if flag); documented in its help and in README.md.
const (
	exitFailed   = 1 // a restore failed, or the command line is wrong
	exitNoBackup = 3 // the target holds no backup of the database (none matches, with --all)
)

// defaultRestoreAllConcurrency is the default of --concurrency: databases
// restored at a time by --all, each with its own downloads.
const defaultRestoreAllConcurrency = 4

func (o *restoreOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.target, "bucket", "b", "", "target URL: s3://bucket[/prefix] or file:///dir")
	f.StringVarP(&o.output, "output", "o", "", "file to write the restored database to (with --all: the directory to restore into)")
	f.StringVar(&o.timestamp, "timestamp", "", "restore the state as of this time (RFC 3339, e.g. 2026-11-26T12:00:00Z)")
	f.StringVar(&o.txid, "txid", "", "restore the state after this transaction ID (decimal, or 16 hex digits as in object names)")
	f.BoolVar(&o.force, "force", false, "replace an existing output file")
	f.StringVar(&o.check, "integrity-check", "full", "check run on the restored file: full, quick or none")
	f.StringVar(&o.vfs, "vfs", "", "for an encrypted database: the VFS that opens it for the check (adiantum or xts)")
	f.StringVar(&o.keyFile, "key-file", "", "with --vfs: file whose first line is key=..., hexkey=... or textkey=...")
	f.BoolVar(&o.asJSON, "json", false, "print the result as one JSON object (snake_case keys: docs/json.md); with --all one per database, then a summary")
	f.BoolVar(&o.ifDBNotExists, "if-db-not-exists", false, "if the output (or its -wal) exists, print a note, touch nothing and exit 0")
	f.BoolVar(&o.ifReplicaExists, "if-replica-exists", false, "if the target holds no backup of the database, print a note and exit 0")
	f.IntVar(&o.download, "download-concurrency", replicate.DefaultRestoreConcurrency, "downloads running at the same time for each database")
	f.BoolVar(&o.all, "all", false, "restore every database in the target (or those --prefix and --pattern select) into the directory -o, mirroring their names")
	f.StringVar(&o.prefix, "prefix", "", "with --all: only the databases whose name starts with this")
	f.StringVar(&o.pattern, "pattern", "", "with --all: only the databases whose whole name matches this pattern (path.Match: * does not cross /)")
	f.IntVar(&o.concurrency, "concurrency", defaultRestoreAllConcurrency, "with --all: databases restored at the same time")
}

// parse converts the flags into library options.
func (o *restoreOptions) parse() (replicate.RestoreOptions, error) {
	var ro replicate.RestoreOptions
	if o.output == "" {
		if o.all {
			return ro, errors.New("restore: -o DIR is required")
		}
		return ro, errors.New("restore: -o OUT is required")
	}
	switch {
	case o.download <= 0:
		return ro, errors.New("restore: --download-concurrency must be positive")
	case o.concurrency <= 0:
		return ro, errors.New("restore: --concurrency must be positive")
	case !o.all && (o.prefix != "" || o.pattern != ""):
		return ro, errors.New("restore: --prefix and --pattern go with --all")
	case o.all && o.txid != "":
		return ro, errors.New("restore: --txid cannot be used with --all (each database has its own TXIDs); use --timestamp")
	}
	if _, err := path.Match(o.pattern, ""); err != nil {
		return ro, fmt.Errorf("restore: --pattern %q: %w", o.pattern, err)
	}
	ro.Concurrency = o.download
	if o.timestamp != "" && o.txid != "" {
		return ro, errors.New("restore: --timestamp and --txid cannot be used together")
	}
	if o.timestamp != "" {
		ts, err := time.Parse(time.RFC3339Nano, o.timestamp)
		if err != nil {
			return ro, fmt.Errorf("restore: --timestamp %q is not RFC 3339 (e.g. 2026-11-26T12:00:00Z)", o.timestamp)
		}
		ro.Timestamp = ts
	}
	if o.txid != "" {
		txid, err := parseTXID(o.txid)
		if err != nil {
			return ro, fmt.Errorf("restore: --txid %q: %w", o.txid, err)
		}
		ro.TXID = txid
	}
	switch o.check {
	case "full":
		ro.Check = replicate.IntegrityFull
	case "quick":
		ro.Check = replicate.IntegrityQuick
	case "none":
		ro.Check = replicate.IntegrityNone
	default:
		return ro, fmt.Errorf("restore: --integrity-check %q: want full, quick or none", o.check)
	}
	ro.Force = o.force
	params, err := o.checkParams()
	if err != nil {
		return ro, err
	}
	ro.CheckParams = params
	return ro, nil
}

// checkParams builds the URI parameters that open an encrypted restored
// database for the integrity check. The key is read from a file, never
// from the command line (where other users could see it).
func (o *restoreOptions) checkParams() (string, error) {
	switch {
	case o.vfs == "" && o.keyFile == "":
		return "", nil
	case o.vfs != "adiantum" && o.vfs != "xts":
		return "", fmt.Errorf("restore: --vfs %q: want adiantum or xts (with --key-file)", o.vfs)
	case o.keyFile == "":
		return "", errors.New("restore: --vfs needs --key-file")
	}
	b, err := os.ReadFile(o.keyFile)
	if err != nil {
		return "", fmt.Errorf("restore: --key-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
	if !ok || (k != "key" && k != "hexkey" && k != "textkey") || v == "" {
		return "", fmt.Errorf("restore: --key-file %s: want one line key=..., hexkey=... or textkey=...", o.keyFile)
	}
	return url.Values{"vfs": {o.vfs}, k: {v}}.Encode(), nil
}

// errBadTXID is the one error of parseTXID, whatever the form.
var errBadTXID = errors.New("want a positive decimal number or 16 hex digits (TXIDs start at 1)")

// parseTXID accepts a decimal TXID or the 16-hex-digit form of object
// names. Zero is refused in every form: it is not a transaction, and the
// library reads a zero TXID as "the newest".
func parseTXID(s string) (ltx.TXID, error) {
	var n uint64
	var err error
	if len(s) == 16 {
		n, err = strconv.ParseUint(s, 16, 64)
	} else {
		n, err = strconv.ParseUint(s, 10, 64)
	}
	if err != nil || n == 0 {
		return 0, errBadTXID
	}
	return ltx.TXID(n), nil
}

func newRestoreCmd(g *globals) *cobra.Command {
	o := &restoreOptions{}
	named := argsNamed([]string{"NAME"}, []string{"the database's name in the target, or its original path; `walsync list -b URL` shows them (or --all)"})
	cmd := &cobra.Command{
		Use:   "restore NAME -b URL -o OUT",
		Short: "Restore a database to its latest state or a point in time",
		Long: `restore rebuilds the database NAME (its name in the target, or its original
absolute path) from the newest snapshot at or before the target point and the
segments after it. Every object's SHA-256 and LTX checksum is verified and
PRAGMA integrity_check is run before the file is renamed into place (mode
0600). An existing OUT is replaced only with --force, never if it is open.

With --all, every database in the target (or those --prefix and --pattern
select) is restored into the directory DIR under its name (tenant1/app.db to
DIR/tenant1/app.db; missing directories are created with mode 0700), all at
the same --timestamp or the latest state, --concurrency at a time. A name
that cannot be a path under DIR fails alone; a database with no backup at
--timestamp is skipped. One line per database, then a summary.

Exit status:
  0  restored; or skipped by --if-db-not-exists or --if-replica-exists
     (--all: no database failed)
  1  failed (--all: at least one database failed), or a wrong command line
  3  the target holds no backup of NAME (--all: no database matches),
     without --if-replica-exists`,
		Example: `  walsync restore tenant1/app.db -b s3://backups/prod -o /tmp/app.db
  walsync restore --all -b s3://backups/prod -o /srv/restored [--prefix tenant] [--pattern '*/app.db'] [--timestamp T] [--concurrency 4]`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.all {
				return noArgs(cmd, args)
			}
			return named(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.all {
				return runRestoreAll(cmd.Context(), g, o)
			}
			return runRestore(cmd.Context(), g, o, args[0])
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runRestore(ctx context.Context, g *globals, o *restoreOptions, name string) error {
	ro, err := o.parse()
	if err != nil {
		return err
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	ro.Logger = log
	if filepath.IsAbs(name) {
		name = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(name)), "/")
	}
	if o.ifDBNotExists {
		if existing := existingOutput(o.output); existing != "" {
			return o.skipped(g, name, fmt.Sprintf("%s exists (--if-db-not-exists)", existing))
		}
	}
	store, err := openExistingStorage(ctx, o.target)
	if err != nil {
		return err
	}
	var prog *progressLine
	if !o.asJSON {
		prog = newProgressLine(g.stderr)
		ro.Progress = prog.restoreProgress
	}
	start := time.Now()
	res, err := replicate.Restore(ctx, store, name, o.output, ro)
	if prog != nil {
		prog.clear() // the live line of a restore that failed early
	}
	if errors.Is(err, replicate.ErrNoBackup) {
		if o.ifReplicaExists {
			return o.skipped(g, name, "the target holds no backup of it (--if-replica-exists)")
		}
		if hint := noBackupHint(ctx, store, name); hint != "" {
			err = fmt.Errorf("%w; %s", err, hint)
		}
		return &exitStatus{code: exitNoBackup, err: err}
	}
	if err != nil {
		return err
	}
	el := time.Since(start)
	if o.asJSON {
		return json.NewEncoder(g.stdout).Encode(newRestoreJSON(name, o.output, res, el))
	}
	fmt.Fprintf(g.stdout, "restored %s to %s: txid %s (%d), %s, %d pages of %d bytes, %d files\n",
		name, o.output, res.TXID, uint64(res.TXID), res.Timestamp.Format(time.RFC3339Nano), res.Pages, res.PageSize, res.Files)
	fmt.Fprintln(g.stderr, restoreSummary(res, el))
	return nil
}

// skipped reports a restore an --if flag skipped: a note (or a JSON
// object with status "skipped"), exit status 0.
func (o *restoreOptions) skipped(g *globals, name, reason string) error {
	if o.asJSON {
		return json.NewEncoder(g.stdout).Encode(restoreJSON{Name: name, Output: o.output, Status: "skipped", Reason: reason})
	}
	fmt.Fprintf(g.stdout, "skipped %s: %s\n", name, reason)
	return nil
}

// existingOutput returns the file of the output that exists, the
// database or its -wal, or "" if neither does (a lone -shm is SQLite's to
// discard).
func existingOutput(out string) string {
	for _, p := range []string{out, out + "-wal"} {
		if _, err := os.Lstat(p); err == nil {
			return p
		}
	}
	return ""
}
