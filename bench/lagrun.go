package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/replicate"
)

// errNoClock is a target where the bench cannot see objects become
// durable: an s3:// target without an endpoint, so without the proxy.
var errNoClock = errors.New("no durability clock: an s3:// target needs an endpoint (the bench's proxy times the uploads)")

// lagWorkers is the number of databases whose lag is computed at the same
// time.
const lagWorkers = 2

// measureLag fills the lag columns of row: for every commit the writer
// made in the window, the time from the commit to the earliest moment the
// target could restore a state holding it. It reads every LTX file of each
// active database from the target and applies them in TXID order to a
// scratch copy, reading max(id) after each.
func (r *run) measureLag(ctx context.Context, row *Row) error {
	if r.lagErr != nil {
		return r.lagErr
	}
	commits, err := readCommitLog(r.commitLog)
	if err != nil {
		return err
	}
	byDB := make([][]commit, r.active)
	for _, c := range commits {
		if c.db >= r.active {
			return fmt.Errorf("commit log: database %d is not an active one", c.db)
		}
		byDB[c.db] = append(byDB[c.db], c)
	}
	store, err := r.cfg.Open(ctx, r.tgt.direct)
	if err != nil {
		return fmt.Errorf("open target: %w", err)
	}
	scratch := filepath.Join(r.dir, "lag")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(scratch)

	var (
		mu         sync.Mutex
		lags       []time.Duration
		notDurable int64
		unseen     int
		objects    int
		first      error
		next       atomic.Int64
		wg         sync.WaitGroup
	)
	for range lagWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= r.active || ctx.Err() != nil {
					return
				}
				res, err := r.lagOne(ctx, store, i, byDB[i], scratch)
				mu.Lock()
				lags = append(lags, res.lags...)
				notDurable += res.notDurable
				unseen += res.unseen
				objects += res.objects
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if first != nil {
		return first
	}
	if unseen > 0 {
		return fmt.Errorf("%d of %d objects have no durability time (%s clock)", unseen, objects, r.clockName)
	}
	s := summarize(lags)
	row.LagCommits, row.LagNotDurable, row.LagClock = int64(s.n), notDurable, r.clockName
	row.LagP50MS, row.LagP99MS, row.LagMaxMS = ms(s.p50), ms(s.p99), ms(s.max)
	return nil
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// lagResult is the lag of the commits of one database.
type lagResult struct {
	lags       []time.Duration
	notDurable int64
	objects    int // LTX files in the target
	unseen     int // of which the clock did not see
}

// lagOne computes the lag of the commits of database i.
func (r *run) lagOne(ctx context.Context, store replicate.Storage, i int, commits []commit, scratch string) (lagResult, error) {
	var res lagResult
	name := filepath.Base(DBPath(r.dbDir, i))
	prefix := name + "/"
	var files []lagFile
	for obj, err := range store.List(ctx, prefix, "") {
		if err != nil {
			return res, fmt.Errorf("lag %s: %w", name, err)
		}
		level, minTXID, maxTXID, ok := parseLagKey(obj.Key[len(prefix):])
		if !ok {
			continue
		}
		f := lagFile{key: obj.Key, level: level, minTXID: minTXID, maxTXID: maxTXID, durable: never}
		if t, ok := r.durable[obj.Key]; ok {
			f.durable = t.UnixNano()
		} else {
			res.unseen++
		}
		files = append(files, f)
	}
	res.objects = len(files)
	steps := planSteps(files)
	if err := applySteps(ctx, store, steps, filepath.Join(scratch, name)); err != nil {
		return res, fmt.Errorf("lag %s: %w", name, err)
	}
	restorableTimes(files, steps)
	res.lags, res.notDurable = commitLags(commits, steps, r.windowStart.UnixNano(), r.stopAt.UnixNano())
	return res, nil
}

// applySteps applies the file of each step in turn to a scratch database
// at path and sets the step's seq to the largest id of table t after it.
func applySteps(ctx context.Context, store replicate.Storage, steps []lagStep, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	defer f.Close()
	var buf []byte
	for k := range steps {
		hdr, err := applyLTX(ctx, store, f, steps[k].file, &buf)
		if err != nil {
			return err
		}
		if err := f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
			return err
		}
		if steps[k].seq, err = readMaxID(path); err != nil {
			return fmt.Errorf("after %s: %w", steps[k].file.key, err)
		}
	}
	return nil
}

// applyLTX writes the pages of one LTX file into f, verifying its
// checksum, and returns its header.
func applyLTX(ctx context.Context, store replicate.Storage, f *os.File, lf lagFile, buf *[]byte) (ltx.Header, error) {
	rc, err := store.Get(ctx, lf.key, 0, -1)
	if err != nil {
		return ltx.Header{}, err
	}
	defer rc.Close()
	dec := ltx.NewDecoder(rc)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, fmt.Errorf("decode %s: %w", lf.key, err)
	}
	hdr := dec.Header()
	if hdr.MinTXID != lf.minTXID || hdr.MaxTXID != lf.maxTXID {
		return hdr, fmt.Errorf("decode %s: header TXIDs %s-%s do not match the key", lf.key, hdr.MinTXID, hdr.MaxTXID)
	}
	if uint32(len(*buf)) != hdr.PageSize {
		*buf = make([]byte, hdr.PageSize)
	}
	var ph ltx.PageHeader
	for {
		err := dec.DecodePage(&ph, *buf)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return hdr, fmt.Errorf("decode %s: %w", lf.key, err)
		}
		if _, err := f.WriteAt(*buf, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return hdr, err
		}
	}
	if err := dec.Close(); err != nil {
		return hdr, fmt.Errorf("decode %s: %w", lf.key, err)
	}
	return hdr, nil
}

// readMaxID returns the largest id of table t in the database at path,
// opened read-only as an immutable file (no WAL, no locks).
func readMaxID(path string) (int64, error) {
	c, err := sqlite3.OpenFlags("file:"+path+"?mode=ro&immutable=1", sqlite3.OPEN_READONLY|sqlite3.OPEN_URI)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer c.Close()
	return maxID(c)
}
