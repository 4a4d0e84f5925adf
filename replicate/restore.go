package replicate

import (
	"bufio"
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
	"golang.org/x/sys/unix"
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
	// Concurrency bounds the downloads running at the same time. Default
	// DefaultRestoreConcurrency.
	Concurrency int
	// Progress, if not nil, is called from one goroutine at a time while
	// the files are downloaded and applied (at most every 100 ms) and once
	// more with Done set at the end.
	Progress func(RestoreProgress)
}

// DefaultRestoreConcurrency is the default of RestoreOptions.Concurrency.
const DefaultRestoreConcurrency = 8

// RestoreProgress reports how far a restore is.
type RestoreProgress struct {
	Files      int   // LTX files downloaded and verified
	FilesTotal int   // files in the plan
	Bytes      int64 // bytes downloaded
	BytesTotal int64 // size of the files in the plan
	Done       bool  // the last call: every file is applied
}

// RestoreResult describes a completed restore.
type RestoreResult struct {
	TXID      ltx.TXID  // transaction ID of the restored state
	Timestamp time.Time // creation time of the last file applied
	Files     int       // LTX files applied
	Pages     uint32    // database size in pages
	PageSize  uint32
	Bytes     int64 // bytes downloaded
	Requests  int   // GET requests made to the target
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
// newest snapshot at or before the target plus the fewest files (segments
// or compacted files) that continue it to exactly the target. The files
// are downloaded in parallel (at most opts.Concurrency GETs at once) into
// a temporary directory next to output, each verified (SHA-256 of the
// object, LTX checksum, contiguity, page size, peers), then merged by page
// number so that each page is written once, then an integrity check. The
// database is written to a temporary file (mode 0600) in the output's
// directory, fsynced and renamed into place, so output is either the
// complete restored database or untouched, and the temporary files are
// removed whatever happens.
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

	concurrency := opts.Concurrency
	if concurrency <= 0 {
		concurrency = DefaultRestoreConcurrency
	}
	rs := newRestoreStore(store, concurrency)
	for _, name := range removeStaleTemps(filepath.Dir(out), time.Now()) {
		log.Info("removed a stale restore temporary file", "file", filepath.Join(filepath.Dir(out), name))
	}
	tmp, err := createRestoreTemp(out)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", name, err)
	}
	defer removeDB(tmp.Name())
	var res RestoreResult
	for attempt := 1; ; attempt++ {
		res, err = restoreInto(ctx, rs, tmp, name, out, opts, log)
		if err == nil || !errors.Is(err, ErrNotExist) || attempt == maxReplans || ctx.Err() != nil {
			break
		}
		// A file of the plan was deleted after the listing: the writer's
		// compaction or retention superseded it. Plan again from a new
		// listing; the state restored is the one asked for, or for a time,
		// the newest restore point at or before it still kept.
		log.Info("a file of the restore plan was deleted meanwhile (compaction or retention); planning again", "db", name, "error", err)
		if err = resetTemp(tmp); err != nil {
			break
		}
	}
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

// maxReplans bounds the plans a restore makes when files of its plan are
// deleted while it runs (a live target being compacted).
const maxReplans = 3

// restoreInto lists the target, plans and applies the plan into tmp.
func restoreInto(ctx context.Context, rs *restoreStore, tmp *os.File, name, out string, opts RestoreOptions, log *slog.Logger) (RestoreResult, error) {
	files, err := listLTXFiles(ctx, rs, name)
	if err != nil {
		return RestoreResult{}, err
	}
	if len(files) == 0 {
		return RestoreResult{}, ErrNoBackup
	}
	var plan []ltxFile
	if !opts.Timestamp.IsZero() {
		plan, err = planTime(ctx, rs, files, opts.Timestamp)
	} else {
		plan, err = planTXID(files, opts.TXID)
	}
	if err != nil {
		return RestoreResult{}, err
	}
	if err := verifyPlan(plan); err != nil {
		return RestoreResult{}, err
	}
	log.Debug("restore plan", "db", name, "files", len(plan), "txid", plan[len(plan)-1].maxTXID.String())
	return applyPlan(ctx, rs, tmp, out, files, plan, opts.Progress)
}

// resetTemp empties the restore's temporary file for another plan.
func resetTemp(tmp *os.File) error {
	if err := tmp.Truncate(0); err != nil {
		return err
	}
	_, err := tmp.Seek(0, io.SeekStart)
	return err
}

// checkOutput refuses an output that exists (unless force) or is in use:
// locked by SQLite or walsync, or open in any process (its -wal and -shm
// included).
func checkOutput(out string, force bool) error {
	fi, err := os.Lstat(out)
	if errors.Is(err, fs.ErrNotExist) {
		for _, side := range []string{out + "-wal", out + "-shm"} {
			if _, err := os.Lstat(side); err == nil && !force {
				return fmt.Errorf("%w: %s", ErrOutputExists, side)
			}
		}
		if err := checkNotOpen(out); err != nil {
			return err
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
	return checkNotOpen(out)
}

// applyPlan downloads the files of plan in parallel into a private
// directory next to out (each verified on its own as it arrives: SHA-256,
// LTX checksums, header TXIDs, page order, its peers in files, the whole
// listing), checks their headers in plan order as one chain (contiguity,
// page size, database size, free space), merges them into f writing each
// page once ([mergeFiles], where every page is checked), then verifies the
// result against the database checksum the last file recorded, if any.
func applyPlan(ctx context.Context, store *restoreStore, f *os.File, out string, files, plan []ltxFile, progress func(RestoreProgress)) (RestoreResult, error) {
	var total int64
	for _, lf := range plan {
		total += lf.size
	}
	dir, err := createRestoreDir(out)
	if err != nil {
		return RestoreResult{}, err
	}
	defer dir.remove()
	if err := checkDownloadSpace(dir.path, total); err != nil {
		return RestoreResult{}, err
	}
	fe := &fetcher{store: store, files: files, dir: dir.path, concurrency: cap(store.sem)}
	prog := startProgress(progress, len(plan), total, &fe.nfiles, &fe.written)
	defer prog.finish(false)
	got, err := fe.fetchAll(ctx, plan)
	if err != nil {
		return RestoreResult{}, err
	}

	var s chainState
	prevs := make([]uint32, len(got))
	for i, g := range got {
		if err := s.checkHeader(g.lf, g.hdr); err != nil {
			return RestoreResult{}, err
		}
		if err := checkSpace(f, g.hdr); err != nil {
			return RestoreResult{}, fmt.Errorf("%s: %w", g.lf.key, err)
		}
		prevs[i] = s.commit
		s.apply(g.hdr, g.tr)
	}
	for lo := 0; lo < len(got); lo += mergeWidth {
		hi := min(lo+mergeWidth, len(got))
		if err := mergeFiles(ctx, f, got[lo:hi], prevs[lo:hi]); err != nil {
			return RestoreResult{}, err
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return RestoreResult{}, err
	}
	if err := checkDBChecksum(bufio.NewReaderSize(f, 1<<16), s, plan[len(plan)-1].key); err != nil {
		return RestoreResult{}, err
	}
	if err := dir.remove(); err != nil {
		return RestoreResult{}, err
	}
	prog.finish(true)
	return RestoreResult{
		TXID: s.txid, Timestamp: time.UnixMilli(s.timestamp).UTC(), Files: s.files,
		Pages: s.commit, PageSize: s.pageSize,
		Bytes: store.bytes.Load(), Requests: int(store.requests.Load()),
	}, nil
}

// checkSpace refuses a file whose database would not fit in the free space
// of f's file system: a header may claim any size, and LZ4 makes a large
// database of empty pages a small object.
func checkSpace(f *os.File, hdr ltx.Header) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	grow := int64(hdr.Commit)*int64(hdr.PageSize) - fi.Size()
	if grow <= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return err
	}
	if free := int64(st.Bavail) * st.Bsize; grow > free {
		return fmt.Errorf("%w: database of %d pages of %d bytes needs %d more bytes, %d free", ErrChainBroken, hdr.Commit, hdr.PageSize, grow, free)
	}
	return nil
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
