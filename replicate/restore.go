package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/superfly/ltx"
)

// IntegrityCheck selects the check run on a restored database.
type IntegrityCheck int

// Integrity checks.
const (
	IntegrityFull  IntegrityCheck = iota // PRAGMA integrity_check
	IntegrityQuick                       // PRAGMA quick_check
	IntegrityNone                        // no check
)

// RestoreOptions configures [Restore].
type RestoreOptions struct {
	// TXID restores the state after this transaction ID; 0 means the newest.
	TXID ltx.TXID
	// Timestamp restores the state as of this time: every file created at or
	// before it. Zero means the newest. Exclusive with TXID.
	Timestamp time.Time
	// Force replaces an existing output file (and its -wal and -shm).
	Force bool
	// Check is the integrity check run before the file is put in place.
	Check IntegrityCheck
	// CheckParams are URI parameters for opening the restored file for the
	// check, for a database encrypted by a VFS: "vfs=adiantum&hexkey=...".
	CheckParams string
	// Logger receives progress logs. Default: discard.
	Logger *slog.Logger
}

// RestoreResult describes a completed restore.
type RestoreResult struct {
	TXID      ltx.TXID  // transaction ID of the restored state
	Timestamp time.Time // creation time of the last file applied
	Files     int       // LTX files applied
	Pages     uint32    // database size in pages
	PageSize  uint32
}

// Restore errors.
var (
	// ErrOutputExists is returned when the output file exists and
	// RestoreOptions.Force is not set.
	ErrOutputExists = errors.New("output file exists (use --force to replace it)")

	// ErrOutputInUse is returned when the output is a database that another
	// connection (or a running walsync) has open; it is never replaced.
	ErrOutputInUse = errors.New("output is a database in use")

	// ErrIntegrity is returned when the restored database fails its check.
	ErrIntegrity = errors.New("restored database failed its integrity check")

	// ErrEncrypted is returned when the restored database is encrypted and
	// no parameters to open it for the integrity check were given.
	ErrEncrypted = errors.New("restored database is encrypted: give the VFS and key for the integrity check, or skip it")
)

// Restore rebuilds the database name from store into the file output: the
// newest snapshot at or before the target plus the contiguous segments after
// it, each verified (SHA-256 of the object, LTX checksum, contiguity, page
// size), then an integrity check. The database is written to a temporary
// file (mode 0600) in the output's directory, fsynced and renamed into
// place, so output is either the complete restored database or untouched.
func Restore(ctx context.Context, store Storage, name, output string, opts RestoreOptions) (RestoreResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.TXID != 0 && !opts.Timestamp.IsZero() {
		return RestoreResult{}, errors.New("restore: TXID and timestamp cannot both be given")
	}
	name, err := CleanName(name)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	out, err := filepath.Abs(output)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if err := checkOutput(out, opts.Force); err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", out, err)
	}

	files, err := listLTXFiles(ctx, store, name)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", name, err)
	}
	if len(files) == 0 {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", name, ErrNoBackup)
	}
	var plan []ltxFile
	if !opts.Timestamp.IsZero() {
		plan, err = planTime(ctx, store, files, opts.Timestamp)
	} else {
		plan, err = planTXID(files, opts.TXID)
	}
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", name, err)
	}
	log.Debug("restore plan", "db", name, "files", len(plan), "txid", plan[len(plan)-1].maxTXID.String())

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".walsync-restore-*")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", name, err)
	}
	defer removeDB(tmp.Name())
	res, err := applyPlan(ctx, store, tmp, plan)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkIntegrity(ctx, tmp.Name(), opts.Check, opts.CheckParams)
	}
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", name, err)
	}
	if err := checkOutput(out, opts.Force); err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", out, err)
	}
	for _, side := range []string{out + "-wal", out + "-shm"} {
		if err := os.Remove(side); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return RestoreResult{}, fmt.Errorf("restore %s: %w", out, err)
		}
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", out, err)
	}
	if err := syncDir(filepath.Dir(out)); err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", out, err)
	}
	return res, nil
}

// checkOutput refuses an output that exists (unless force) or is in use.
func checkOutput(out string, force bool) error {
	fi, err := os.Lstat(out)
	if errors.Is(err, fs.ErrNotExist) {
		for _, side := range []string{out + "-wal", out + "-shm"} {
			if _, err := os.Lstat(side); err == nil && !force {
				return fmt.Errorf("%w: %s", ErrOutputExists, side)
			}
		}
		if dfi, err := os.Stat(filepath.Dir(out)); err != nil {
			return fmt.Errorf("output directory: %w", err)
		} else if !dfi.IsDir() {
			return fmt.Errorf("output directory %s is not a directory", filepath.Dir(out))
		}
		return nil
	} else if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("output %s is not a regular file", out)
	}
	if inUse(out) {
		return ErrOutputInUse
	}
	if !force {
		return ErrOutputExists
	}
	return nil
}

// applyPlan writes the pages of each file of plan, in order, into f.
func applyPlan(ctx context.Context, store Storage, f *os.File, plan []ltxFile) (RestoreResult, error) {
	var res RestoreResult
	var buf []byte
	for i, lf := range plan {
		hdr, err := applyFile(ctx, store, f, lf, &buf)
		if err != nil {
			return res, err
		}
		switch {
		case i == 0 && !hdr.IsSnapshot():
			return res, fmt.Errorf("%s: first file is not a snapshot", lf.key)
		case i > 0 && (hdr.MinTXID > res.TXID+1 || hdr.MaxTXID <= res.TXID):
			// Overlap is fine (Litestream's compacted files): a file holds
			// the newest copy of each page it covers.
			return res, fmt.Errorf("%s: not contiguous with TXID %s", lf.key, res.TXID)
		case i > 0 && hdr.PageSize != res.PageSize:
			return res, fmt.Errorf("%s: page size %d differs from %d", lf.key, hdr.PageSize, res.PageSize)
		}
		res.TXID, res.PageSize, res.Pages = hdr.MaxTXID, hdr.PageSize, hdr.Commit
		res.Timestamp = time.UnixMilli(hdr.Timestamp).UTC()
		res.Files++
		if err := f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
			return res, err
		}
	}
	return res, nil
}

// applyFile downloads one LTX file and writes its pages into f. The whole
// object is read so that the storage verifies its SHA-256, and the decoder
// verifies the LTX checksum.
func applyFile(ctx context.Context, store Storage, f *os.File, lf ltxFile, buf *[]byte) (ltx.Header, error) {
	rc, err := store.Get(ctx, lf.key, 0, -1)
	if err != nil {
		return ltx.Header{}, err
	}
	defer rc.Close()
	dec := ltx.NewDecoder(rc)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, fmt.Errorf("%s: %w", lf.key, err)
	}
	hdr := dec.Header()
	if hdr.MinTXID != lf.minTXID || hdr.MaxTXID != lf.maxTXID {
		return hdr, fmt.Errorf("%s: header TXIDs %s-%s do not match the key", lf.key, hdr.MinTXID, hdr.MaxTXID)
	}
	if uint32(len(*buf)) != hdr.PageSize {
		*buf = make([]byte, hdr.PageSize)
	}
	var ph ltx.PageHeader
	for {
		if err := ctx.Err(); err != nil {
			return hdr, err
		}
		err := dec.DecodePage(&ph, *buf)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return hdr, fmt.Errorf("%s: %w", lf.key, err)
		}
		if _, err := f.WriteAt(*buf, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return hdr, err
		}
	}
	if err := dec.Close(); err != nil {
		return hdr, fmt.Errorf("%s: %w", lf.key, err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return hdr, err
	}
	return hdr, nil
}

// checkIntegrity opens the restored file and runs the selected check with
// the schema untrusted.
func checkIntegrity(ctx context.Context, path string, check IntegrityCheck, params string) error {
	pragma := "integrity_check"
	switch check {
	case IntegrityNone:
		return nil
	case IntegrityQuick:
		pragma = "quick_check"
	}
	if params == "" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, herr := readDBHeader(f)
		f.Close()
		if errors.Is(herr, ErrNotSQLite) {
			return ErrEncrypted
		}
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: params}
	conn, err := sqlite3.OpenContext(ctx, u.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec("PRAGMA trusted_schema=OFF"); err != nil {
		return err
	}
	stmt, _, err := conn.Prepare("PRAGMA " + pragma)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	defer stmt.Close()
	for stmt.Step() {
		if msg := stmt.ColumnText(0); msg != "ok" {
			return fmt.Errorf("%w: %s", ErrIntegrity, msg)
		}
	}
	if err := stmt.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	return nil
}

// removeDB removes a database file with its -wal and -shm, if present.
func removeDB(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Remove(p)
	}
}

// syncDir fsyncs a directory so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
