package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/redact"
	"github.com/walsync/walsync/replicate"
)

// runRestoreAll is `walsync restore --all`: every selected database of the
// target restored into the directory o.output under its name, a few at a
// time. A database that cannot be restored fails alone; the exit status is
// 1 if any did, 3 if none is selected (0 with --if-replica-exists).
func runRestoreAll(ctx context.Context, g *globals, o *restoreOptions) error {
	ro, err := o.parse()
	if err != nil {
		return err
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	ro.Logger = log
	store, err := openExistingStorage(ctx, o.target)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(o.output)
	if err != nil {
		return fmt.Errorf("restore --all: %w", err)
	}
	backups, err := listBackups(ctx, store)
	if err != nil {
		return fmt.Errorf("restore --all: %w", err)
	}
	backups = slices.DeleteFunc(backups, func(b backup) bool { return !o.selects(b.name) })
	if len(backups) == 0 {
		return o.noneSelected(g)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("restore --all: %w", err)
	}
	a := &restoreAll{g: g, o: o, store: store, ro: ro, dir: dir, total: len(backups)}
	if !o.asJSON {
		a.prog = newProgressLine(g.stderr)
	}
	a.run(ctx, planRestores(dir, backups))
	return a.finish(ctx)
}

// selects reports whether --prefix and --pattern select the database name.
func (o *restoreOptions) selects(name string) bool {
	if !strings.HasPrefix(name, o.prefix) {
		return false
	}
	if o.pattern == "" {
		return true
	}
	ok, _ := path.Match(o.pattern, name) // validated by parse
	return ok
}

// noneSelected ends --all when no database matches: exit status 3, or a
// note and 0 with --if-replica-exists.
func (o *restoreOptions) noneSelected(g *globals) error {
	what := "the target holds no database"
	if o.prefix != "" || o.pattern != "" {
		what = "no database in the target matches --prefix and --pattern"
	}
	if o.asJSON {
		if err := json.NewEncoder(g.stdout).Encode(restoreAllJSON{Summary: true}); err != nil {
			return err
		}
	}
	if o.ifReplicaExists {
		if !o.asJSON {
			fmt.Fprintf(g.stdout, "restore --all: %s (--if-replica-exists)\n", what)
		}
		return nil
	}
	return &exitStatus{code: exitNoBackup, err: fmt.Errorf("restore --all: %s", what)}
}

// backup is one database of the target, as its object keys name it.
type backup struct {
	name string // as in the keys: untrusted
	snap string // key of its oldest snapshot (lowest TXID); "" if none
	txid ltx.TXID
}

// listBackups lists the target once and returns every database its LTX
// keys (<name>/<level>/<min>-<max>.ltx) name, sorted. Names are returned
// as found, including those no restore accepts, so that they are reported
// rather than silently left out.
func listBackups(ctx context.Context, store replicate.Storage) ([]backup, error) {
	byName := make(map[string]*backup)
	for obj, err := range store.List(ctx, "", "") {
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		name, level, maxTXID, ok := splitLTXKey(obj.Key)
		if !ok {
			continue
		}
		b := byName[name]
		if b == nil {
			b = &backup{name: name}
			byName[name] = b
		}
		if level == replicate.SnapshotLevel && (b.snap == "" || maxTXID < b.txid) {
			b.snap, b.txid = obj.Key, maxTXID
		}
	}
	out := make([]backup, 0, len(byName))
	for _, b := range byName {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b backup) int { return cmp.Compare(a.name, b.name) })
	return out, nil
}

// splitLTXKey splits <name>/<level: 4 hex digits>/<min>-<max>.ltx (TXIDs
// of 16 hex digits). The name is not checked.
func splitLTXKey(key string) (name string, level int, maxTXID ltx.TXID, ok bool) {
	rest, file, ok1 := cutLast(key)
	name, lv, ok2 := cutLast(rest)
	if !ok1 || !ok2 || name == "" || len(lv) != 4 || len(file) != 37 || file[16] != '-' || !strings.HasSuffix(file, ".ltx") {
		return "", 0, 0, false
	}
	l, err1 := strconv.ParseUint(lv, 16, 16)
	_, err2 := strconv.ParseUint(file[:16], 16, 64)
	m, err3 := strconv.ParseUint(file[17:33], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil || int(l) > replicate.SnapshotLevel {
		return "", 0, 0, false
	}
	return name, int(l), ltx.TXID(m), true
}

// cutLast cuts s around its last slash.
func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// restoreJob is the restore of one database into the output directory.
type restoreJob struct {
	backup
	out string // the file to write: the directory joined with the name
	err error  // why the name cannot be restored under the directory
}

// sideSuffixes end the files SQLite keeps next to a database: a database
// restored under such a name would be taken for another one's.
var sideSuffixes = []string{"-wal", "-shm", "-journal"}

// planRestores maps each database to its file under dir. Names come from
// the target and are not trusted: a name that is not in canonical form
// (absolute, with . or .. elements, empty elements, a backslash, control
// characters), that ends like SQLite's side files, or that another name
// needs as a directory, gets an error instead of a file, so that nothing
// is ever written outside dir or over another database's files.
func planRestores(dir string, backups []backup) []restoreJob {
	dirs := make(map[string]bool)
	for _, b := range backups {
		for p := path.Dir(b.name); p != "." && p != "/" && !dirs[p]; p = path.Dir(p) {
			dirs[p] = true
		}
	}
	jobs := make([]restoreJob, len(backups))
	for i, b := range backups {
		j := restoreJob{backup: b}
		clean, err := replicate.CleanName(b.name)
		base := path.Base(b.name)
		switch {
		case err != nil:
			j.err = fmt.Errorf("name cannot be a path under %s: %w", dir, err)
		case clean != b.name:
			j.err = fmt.Errorf("name cannot be a path under %s: %w: %q is not in canonical form (%q)", dir, replicate.ErrBadName, b.name, clean)
		case slices.ContainsFunc(sideSuffixes, func(s string) bool { return strings.HasSuffix(base, s) }):
			j.err = fmt.Errorf("name %q ends like an SQLite side file (-wal, -shm, -journal): its file would be taken for another database's", b.name)
		case dirs[b.name]:
			j.err = fmt.Errorf("name %q is also the directory of other databases (%s/...)", b.name, b.name)
		default:
			j.out = filepath.Join(dir, filepath.FromSlash(clean))
		}
		jobs[i] = j
	}
	return jobs
}

// restoreAll runs the jobs of one `restore --all` and counts their
// outcomes.
type restoreAll struct {
	g     *globals
	o     *restoreOptions
	store replicate.Storage
	ro    replicate.RestoreOptions
	dir   string
	prog  *progressLine // nil under --json
	total int
	start time.Time

	mu       sync.Mutex
	done     int            // +checklocks:mu
	counts   map[string]int // by status +checklocks:mu
	bytes    int64          // of the finished restores +checklocks:mu
	requests int            // +checklocks:mu
	inflight map[int]int64  // bytes so far of the running restores +checklocks:mu
	outErr   error          // the first error writing the output +checklocks:mu
}

// run restores the jobs, o.concurrency at a time, and reports each as it
// ends. Once ctx is done, no more are started.
func (a *restoreAll) run(ctx context.Context, jobs []restoreJob) {
	a.start = time.Now()
	a.counts = make(map[string]int)
	a.inflight = make(map[int]int64)
	sem := make(chan struct{}, a.o.concurrency)
	var wg sync.WaitGroup
	for i, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			a.report(i, a.restore(ctx, i, j))
		})
	}
	wg.Wait()
}

// restore restores one database and returns its outcome.
func (a *restoreAll) restore(ctx context.Context, i int, j restoreJob) restoreJSON {
	r := restoreJSON{Name: j.name, Output: j.out}
	fail := func(err error) restoreJSON {
		r.Status, r.Reason = "failed", redact.Text(oneLine(err))
		return r
	}
	skip := func(reason string) restoreJSON {
		r.Status, r.Reason = "skipped", reason
		return r
	}
	if j.err != nil {
		return fail(j.err)
	}
	if a.o.ifDBNotExists {
		if existing := existingOutput(j.out); existing != "" {
			return skip(fmt.Sprintf("%s exists (--if-db-not-exists)", existing))
		}
	}
	if err := mkdirBeneath(a.dir, path.Dir(j.name)); err != nil {
		return fail(fmt.Errorf("restore %s: %w", j.name, err))
	}
	ro := a.ro
	if a.prog != nil {
		ro.Progress = func(p replicate.RestoreProgress) { a.progress(i, p.Bytes) }
	}
	start := time.Now()
	res, err := replicate.Restore(ctx, a.store, j.name, j.out, ro)
	switch {
	case err == nil:
		r = newRestoreJSON(j.name, j.out, res, time.Since(start))
		return r
	case errors.Is(err, replicate.ErrNoBackup):
		return skip("no backup any more (deleted since the listing)")
	case !ro.Timestamp.IsZero() && errors.Is(err, replicate.ErrNotRestorable) && ctx.Err() == nil:
		if later, herr := createdAfter(ctx, a.store, j.snap, ro.Timestamp); herr == nil && later {
			return skip("no backup at that time (its first snapshot is later)")
		}
	}
	return fail(err)
}

// createdAfter reports whether the snapshot key (a database's oldest) was
// created after ts: the database did not exist then. Without a snapshot
// (key "") the backup is broken, not late: false.
func createdAfter(ctx context.Context, store replicate.Storage, key string, ts time.Time) (bool, error) {
	if key == "" {
		return false, nil
	}
	rc, err := store.Get(ctx, key, 0, ltx.HeaderSize)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	b := make([]byte, ltx.HeaderSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return false, err
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		return false, err
	}
	return time.UnixMilli(hdr.Timestamp).After(ts), nil
}

// mkdirBeneath creates the directory rel (slash-separated, canonical)
// under root one element at a time, with mode 0700, and checks each is a
// directory and not a symbolic link, so that a link planted under root
// cannot send a restore elsewhere.
func mkdirBeneath(root, rel string) error {
	if rel == "." {
		return nil
	}
	p := root
	for el := range strings.SplitSeq(rel, "/") {
		p = filepath.Join(p, el)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (%s)", p, fi.Mode().Type())
		}
	}
	return nil
}

// progress records the bytes restore i downloaded so far and redraws the
// live line.
func (a *restoreAll) progress(i int, bytes int64) {
	a.mu.Lock()
	a.inflight[i] = bytes
	line := a.lineLocked()
	a.mu.Unlock()
	a.prog.draw(line)
}

// lineLocked returns the live line: databases done, failures, bytes, rate
// and the time left at the pace so far. The caller holds a.mu.
func (a *restoreAll) lineLocked() string {
	bytes := a.bytes
	for _, n := range a.inflight {
		bytes += n
	}
	el := a.prog.elapsed()
	return restoreAllLine(a.done, a.total, a.counts["failed"], bytes, el)
}

// restoreAllLine is the live line of --all.
func restoreAllLine(done, total, failed int, bytes int64, el time.Duration) string {
	return fmt.Sprintf("restore --all: %d/%d databases, %d failed, %s, %s, ETA %s",
		done, total, failed, fmtBytes(bytes), fmtRate(bytes, el), fmtETA(int64(done), int64(total), el))
}

// report counts and prints the outcome of job i: a line per database, or a
// JSON object.
func (a *restoreAll) report(i int, r restoreJSON) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.inflight, i)
	a.done++
	a.counts[r.Status]++
	a.bytes += r.Bytes
	a.requests += r.Requests
	var err error
	if a.o.asJSON {
		err = json.NewEncoder(a.g.stdout).Encode(r)
	} else {
		a.prog.println(a.g.stdout, restoreAllText(r))
		a.prog.draw(a.lineLocked())
	}
	if err != nil && a.outErr == nil {
		a.outErr = err
	}
}

// restoreAllText is the line of one database.
func restoreAllText(r restoreJSON) string {
	name := showName(r.Name)
	if r.Status == "restored" {
		return fmt.Sprintf("restored %s to %s: txid %d, %d files, %s", name, r.Output, r.TXID, r.Files, fmtBytes(r.Bytes))
	}
	return fmt.Sprintf("%s %s: %s", r.Status, name, r.Reason)
}

// showName returns name as is, or quoted if it holds characters a
// terminal would interpret (a name from the target is not trusted).
func showName(name string) string {
	if q := strconv.Quote(name); q[1:len(q)-1] != name {
		return q
	}
	return name
}

// finish prints the summary and returns the command's error: exit status
// 1 if any database failed.
func (a *restoreAll) finish(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	el := time.Since(a.start)
	sum := restoreAllJSON{Summary: true, Databases: a.total, Restored: a.counts["restored"], Skipped: a.counts["skipped"],
		Failed: a.counts["failed"], Bytes: a.bytes, Requests: a.requests, DurationMS: el.Milliseconds()}
	if a.o.asJSON {
		if err := json.NewEncoder(a.g.stdout).Encode(sum); err != nil && a.outErr == nil {
			a.outErr = err
		}
	} else {
		a.prog.clear()
		fmt.Fprintf(a.g.stdout, "restore --all: %d restored, %d skipped, %d failed of %d; %s, %d requests in %s (%s)\n",
			sum.Restored, sum.Skipped, sum.Failed, sum.Databases, fmtBytes(sum.Bytes), sum.Requests, fmtDuration(el), fmtRate(sum.Bytes, el))
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("restore --all: interrupted after %d of %d databases: %w", a.done, a.total, context.Cause(ctx))
	case sum.Failed > 0:
		return &exitStatus{code: exitFailed, err: fmt.Errorf("restore --all: %d of %d databases failed", sum.Failed, sum.Databases)}
	}
	return a.outErr
}
