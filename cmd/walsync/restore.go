package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
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
}

func (o *restoreOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.target, "bucket", "b", "", "target URL: s3://bucket[/prefix] or file:///dir")
	f.StringVarP(&o.output, "output", "o", "", "file to write the restored database to")
	f.StringVar(&o.timestamp, "timestamp", "", "restore the state as of this time (RFC 3339, e.g. 2026-11-26T12:00:00Z)")
	f.StringVar(&o.txid, "txid", "", "restore the state after this transaction ID (decimal, or 16 hex digits as in object names)")
	f.BoolVar(&o.force, "force", false, "replace an existing output file")
	f.StringVar(&o.check, "integrity-check", "full", "check run on the restored file: full, quick or none")
	f.StringVar(&o.vfs, "vfs", "", "for an encrypted database: the VFS that opens it for the check (adiantum or xts)")
	f.StringVar(&o.keyFile, "key-file", "", "with --vfs: file whose first line is key=..., hexkey=... or textkey=...")
	f.BoolVar(&o.asJSON, "json", false, "print the result as one JSON object (snake_case keys: docs/json.md)")
}

// parse converts the flags into library options.
func (o *restoreOptions) parse() (replicate.RestoreOptions, error) {
	var ro replicate.RestoreOptions
	if o.output == "" {
		return ro, errors.New("restore: -o OUT is required")
	}
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
	cmd := &cobra.Command{
		Use:   "restore NAME -b URL -o OUT",
		Short: "Restore a database to its latest state or a point in time",
		Long: `restore rebuilds the database NAME (its name in the target, or its original
absolute path) from the newest snapshot at or before the target point and the
segments after it. Every object's SHA-256 and LTX checksum is verified and
PRAGMA integrity_check is run before the file is renamed into place (mode
0600). An existing OUT is replaced only with --force, never if it is open.`,
		Args: argsNamed([]string{"NAME"}, []string{"the database's name in the target, or its original path; `walsync list -b URL` shows them"}),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	store, err := openExistingStorage(ctx, o.target)
	if err != nil {
		return err
	}
	res, err := replicate.Restore(ctx, store, name, o.output, ro)
	if errors.Is(err, replicate.ErrNoBackup) {
		if hint := noBackupHint(ctx, store, name); hint != "" {
			return fmt.Errorf("%w; %s", err, hint)
		}
	}
	if err != nil {
		return err
	}
	if o.asJSON {
		return json.NewEncoder(g.stdout).Encode(newRestoreJSON(name, o.output, res))
	}
	fmt.Fprintf(g.stdout, "restored %s to %s: txid %s (%d), %s, %d pages of %d bytes, %d files\n",
		name, o.output, res.TXID, uint64(res.TXID), res.Timestamp.Format(time.RFC3339Nano), res.Pages, res.PageSize, res.Files)
	return nil
}
