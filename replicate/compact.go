package replicate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"
)

// compactor merges each active database's files into levels, in
// Litestream v0.5's layout and numbering, and deletes what the retention
// window no longer needs (retain.go). It is part of the shared uploader:
// one goroutine owned by [Replicator.Run] decides what is due, and at most
// Options.CompactionConcurrency jobs run at a time, all databases
// together.
//
// Only databases that uploaded something are looked at: an upload marks
// the database active, and it stays active until every level has caught
// up with its segments and the deletions that follow are done. An idle
// database costs no request.
//
// Level l (1..n) of a database is compacted at most once per interval_l,
// at the first boundary (a multiple of the interval, as Litestream does)
// after its last compaction, when level l-1 holds files beyond level l's
// newest: the files of level l-1 after it, a contiguous run, are merged
// into one file of level l (newest page wins, streamed: see merge.go).
type compactor struct {
	r         *Replicator
	intervals []time.Duration // of levels 1..n
	sem       chan struct{}   // the global budget of running jobs

	now       func() time.Time // the clock (tests move it)
	hookEvery time.Duration    // least time between two AfterCompactions calls
	running   atomic.Int64     // jobs running

	mu     sync.Mutex
	active map[*DB]*compactState // +checklocks:mu
	kick   chan struct{}
}

// compactState is what the compactor knows of one active database. It is
// allocated when the database becomes active and dropped when it is idle
// again, so an idle database costs nothing here.
type compactState struct {
	top     [SnapshotLevel]ltx.TXID  // newest TXID at each level 0..8
	known   [SnapshotLevel]bool      // top[l] was read from the target or set by us
	lastRun [SnapshotLevel]time.Time // last compaction into level l
	l0Due   time.Time                // level-0 deletions due (zero: none)
	keepDue time.Time                // retention due (zero: none)
	stage   *stage                   // local copies of segments not compacted yet (stage.go)
	running bool                     // a job runs for the database
	failing bool                     // the last job failed (and said so)
	forgot  bool                     // the database was removed
}

// minHookInterval is the least time between two AfterCompactions calls.
const minHookInterval = 5 * time.Second

// maxMergeInputs bounds the files merged into one output: memory grows
// with the inputs (a page buffer each). A longer run is merged into
// several files of the same level.
const maxMergeInputs = 64

func newCompactor(r *Replicator) *compactor {
	return &compactor{
		r:         r,
		intervals: r.opts.CompactionIntervals,
		sem:       make(chan struct{}, r.opts.CompactionConcurrency),
		now:       time.Now,
		hookEvery: minHookInterval,
		active:    make(map[*DB]*compactState),
		kick:      make(chan struct{}, 1),
	}
}

// levels returns the number of compaction levels.
func (c *compactor) levels() int { return len(c.intervals) }

// uploaded records that an object of level level ending at txid is in
// the target. A segment makes the database active; a snapshot does not:
// the deletions it allows wait for the next compaction of the top level
// (a database that only takes snapshots, such as a new one, makes no
// request for them).
func (c *compactor) uploaded(d *DB, level int, txid ltx.TXID) {
	if level != SegmentLevel || (c.levels() == 0 && c.r.opts.Retention < 0) {
		return
	}
	c.mu.Lock()
	st := c.active[d]
	if st == nil {
		st = &compactState{}
		c.active[d] = st
	}
	if txid > st.top[0] {
		st.top[0], st.known[0] = txid, true
	}
	if c.levels() == 0 && st.keepDue.IsZero() {
		// No top level to follow: retention runs an hour after the
		// first segment since it last ran (the database stays in the
		// set, at no cost, until then).
		st.keepDue = c.now().Add(time.Hour)
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// stageSegment keeps a local copy of a segment being uploaded, for the
// level-1 compaction (stage.go). The caller holds d.upMu.
func (c *compactor) stageSegment(d *DB, minTXID, maxTXID ltx.TXID, r io.ReadSeeker, size int64) {
	if c.levels() == 0 {
		return
	}
	c.mu.Lock()
	st := c.active[d]
	if st == nil {
		st = &compactState{}
		c.active[d] = st
	}
	if st.stage == nil {
		st.stage = &stage{}
	}
	sg := st.stage
	c.mu.Unlock()
	sg.add(c.r.opts.SpoolDir, minTXID, maxTXID, r, size)
}

// close drops every database's state and frees the stages' disk space
// (Run has returned: no job runs).
func (c *compactor) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, st := range c.active {
		st.forgot = true
		if st.stage != nil {
			st.stage.drop()
		}
		delete(c.active, d)
	}
}

// forget drops d; a running job finds it gone and stops.
func (c *compactor) forget(d *DB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.active[d]; st != nil {
		st.forgot = true
		delete(c.active, d)
		if st.stage != nil {
			st.stage.drop()
		}
	}
}

// run dispatches due jobs until ctx is done, then waits for the running
// ones (cancelled with ctx) to return.
func (c *compactor) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	burst := false // jobs started since the last AfterCompactions
	var hooked time.Time
	for {
		now := c.now()
		due, next := c.takeDue(now)
		for i, d := range due {
			select {
			case c.sem <- struct{}{}:
			case <-ctx.Done():
				c.putBack(due[i:])
				return
			}
			c.running.Add(1)
			burst = true
			wg.Go(func() {
				defer func() { <-c.sem }()
				c.job(ctx, d)
				c.finish(d)
				c.running.Add(-1)
			})
		}
		if len(due) > 0 {
			continue // jobs may have finished: look again
		}
		if burst && c.running.Load() == 0 && time.Since(hooked) >= c.hookEvery {
			// Every job of this boundary is done: give the memory of
			// the merges back at once instead of at the scavenger's pace
			// (at most every minHookInterval: short intervals would
			// otherwise force a GC several times a second).
			burst, hooked = false, time.Now()
			if hook := c.r.opts.AfterCompactions; hook != nil {
				hook()
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(c.now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// runDue runs the jobs due now on the calling goroutine, one at a time
// (for tests, which move the clock instead of waiting).
func (c *compactor) runDue(ctx context.Context) {
	due, _ := c.takeDue(c.now())
	for _, d := range due {
		c.job(ctx, d)
		c.finish(d)
	}
}

// takeDue marks the databases with work due at now as running and
// returns them, and the earliest time another is due.
func (c *compactor) takeDue(now time.Time) (due []*DB, next time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, st := range c.active {
		if st.running {
			continue
		}
		at, ok := c.dueAt(st)
		if !ok {
			delete(c.active, d) // caught up, nothing to delete: idle
			if st.stage != nil {
				st.stage.drop()
			}
			continue
		}
		if !at.After(now) {
			st.running = true
			due = append(due, d)
		} else if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return due, next
}

// putBack returns databases taken by takeDue but never started.
func (c *compactor) putBack(dbs []*DB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range dbs {
		if st := c.active[d]; st != nil {
			st.running = false
		}
	}
}

// finish marks d's job done and wakes the dispatcher.
func (c *compactor) finish(d *DB) {
	c.mu.Lock()
	if st := c.active[d]; st != nil {
		st.running = false
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// dueAt returns when the next piece of work of a database is due, or false
// if it has none. The caller holds c.mu.
func (c *compactor) dueAt(st *compactState) (time.Time, bool) {
	var at time.Time
	found := false
	take := func(t time.Time) {
		if !found || t.Before(at) {
			at, found = t, true
		}
	}
	for l := 1; l <= c.levels(); l++ {
		if st.caughtUp(l) {
			continue
		}
		if !st.known[l-1] && !st.known[l] {
			continue // nothing new below: an upload sets top[0]
		}
		take(nextBoundary(st.lastRun[l], c.intervals[l-1]))
	}
	if !st.l0Due.IsZero() {
		take(st.l0Due)
	}
	if !st.keepDue.IsZero() {
		take(st.keepDue)
	}
	return at, found
}

// caughtUp reports whether level l holds everything level l-1 does, as
// far as the compactor knows.
func (st *compactState) caughtUp(l int) bool {
	return st.known[l] && st.known[l-1] && st.top[l-1] <= st.top[l]
}

// nextBoundary returns the first multiple of interval after last, or the
// zero time (due at once) if last is zero.
func nextBoundary(last time.Time, interval time.Duration) time.Time {
	if last.IsZero() {
		return time.Time{}
	}
	return last.Truncate(interval).Add(interval)
}

// state returns a copy of d's state, or false if d was forgotten.
func (c *compactor) state(d *DB) (compactState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.active[d]
	if st == nil || st.forgot {
		return compactState{}, false
	}
	return *st, true
}

// update applies f to d's state unless d was forgotten.
func (c *compactor) update(d *DB, f func(st *compactState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.active[d]; st != nil && !st.forgot {
		f(st)
	}
}

// job does the work due for d: the compactions of each level in order
// (a boundary of level l is one of every level below), then the
// deletions. An error is logged and counted; the work is tried again at
// the next boundary.
func (c *compactor) job(ctx context.Context, d *DB) {
	now := c.now()
	var l0 []ltxFile // level 0 as listed by the level-1 compaction
	for l := 1; l <= c.levels(); l++ {
		st, ok := c.state(d)
		if !ok || ctx.Err() != nil {
			return
		}
		if st.caughtUp(l) {
			continue
		}
		if nextBoundary(st.lastRun[l], c.intervals[l-1]).After(now) {
			continue
		}
		src, err := c.compactLevel(ctx, d, l)
		if err != nil {
			if ctx.Err() == nil {
				c.r.metrics.compactionErrors.Add(1)
				c.warn(d, "compaction failed; retrying at the next boundary", "level", l, "error", err)
			}
			c.update(d, func(st *compactState) { st.lastRun[l] = now })
			return
		}
		if l == 1 {
			l0 = src
		}
		if l == c.levels() {
			c.update(d, func(st *compactState) {
				if st.keepDue.IsZero() {
					st.keepDue = now
				}
			})
		}
	}
	failed := false
	if l0 != nil || c.l0Due(d, now) {
		if err := c.enforceL0(ctx, d, l0, now); err != nil && ctx.Err() == nil {
			failed = true
			c.r.metrics.compactionErrors.Add(1)
			c.warn(d, "deleting compacted segments failed; retrying later", "error", err)
			c.update(d, func(st *compactState) { st.l0Due = now.Add(c.intervals[0]) })
		}
	}
	if st, ok := c.state(d); ok && !st.keepDue.IsZero() && !st.keepDue.After(now) {
		if err := c.enforceRetention(ctx, d, now); err != nil && ctx.Err() == nil {
			c.r.metrics.compactionErrors.Add(1)
			c.warn(d, "retention failed; retrying later", "error", err)
			c.update(d, func(st *compactState) { st.keepDue = now.Add(c.retryEvery()) })
			return
		}
		c.update(d, func(st *compactState) {
			if !st.keepDue.After(now) {
				st.keepDue = time.Time{}
			}
		})
	}
	if !failed {
		c.update(d, func(st *compactState) { st.failing = false })
	}
}

// warn logs a failed job of d at WARN, or at DEBUG while its jobs keep
// failing (a target down for an hour must not log every 30 s per
// database); the count is in the metrics either way.
func (c *compactor) warn(d *DB, msg string, args ...any) {
	repeat := false
	c.update(d, func(st *compactState) { repeat, st.failing = st.failing, true })
	if repeat {
		d.debug(msg, args...)
		return
	}
	d.logger().Warn(msg, args...)
}

// l0Due reports whether d's level-0 deletions are due at now.
func (c *compactor) l0Due(d *DB, now time.Time) bool {
	st, ok := c.state(d)
	return ok && !st.l0Due.IsZero() && !st.l0Due.After(now)
}

// retryEvery is how long a failed retention waits: the level-1 interval,
// or a minute without compaction.
func (c *compactor) retryEvery() time.Duration {
	if c.levels() > 0 {
		return c.intervals[0]
	}
	return time.Minute
}

// compactLevel merges the files of level l-1 beyond level l's newest into
// level l, as many outputs as the run needs, and returns the listing of
// level l-1 it worked from.
func (c *compactor) compactLevel(ctx context.Context, d *DB, l int) ([]ltxFile, error) {
	store := c.r.store
	if st, ok := c.state(d); ok && !st.known[l] {
		files, err := listLevel(ctx, store, d.name, l, "")
		if err != nil {
			return nil, err
		}
		var top ltx.TXID
		var at time.Time
		for _, f := range files {
			if f.maxTXID > top {
				top, at = f.maxTXID, f.modTime
			}
		}
		c.update(d, func(st *compactState) {
			st.top[l], st.known[l] = max(st.top[l], top), true
			if st.lastRun[l].IsZero() {
				st.lastRun[l] = at
			}
		})
		if !at.IsZero() && nextBoundary(at, c.intervals[l-1]).After(c.now()) {
			return nil, nil // compacted less than an interval ago (by a previous run)
		}
	}
	st, ok := c.state(d)
	if !ok {
		return nil, nil
	}
	after := ""
	if l > 1 && st.top[l] > 0 {
		after = levelPrefix(d.name, l-1) + ltx.FormatFilename(st.top[l], ^ltx.TXID(0))
	}
	src, err := listLevel(ctx, store, d.name, l-1, after)
	if err != nil {
		return nil, err
	}
	top := st.top[l]
	if len(src) > 0 {
		newest := slices.MaxFunc(src, func(a, b ltxFile) int { return cmp.Compare(a.maxTXID, b.maxTXID) }).maxTXID
		c.update(d, func(st *compactState) { st.top[l-1], st.known[l-1] = max(st.top[l-1], newest), true })
	}
	now := c.now()
	for {
		run := compactionRun(src, top)
		if len(run) == 0 {
			break
		}
		c.giveWay(ctx)
		out, err := c.merge(ctx, d, l, run)
		if err != nil {
			return nil, err
		}
		top = out.maxTXID
		c.r.metrics.compactions.Add(1)
		c.update(d, func(st *compactState) {
			st.top[l], st.known[l] = max(st.top[l], top), true
		})
		if l == 1 && st.stage != nil {
			st.stage.release(c.r.opts.SpoolDir, top)
		}
		d.debug("compacted", "level", l, "files", len(run), "key", out.key, "size", out.size)
	}
	c.update(d, func(st *compactState) { st.lastRun[l] = now })
	return src, nil
}

// giveWay waits, at most maxGiveWay, while syncs run: replication comes
// first, and a merge (CPU and disk) started while a large segment is
// captured and uploaded delays that segment. The bound keeps a database
// written without pause from starving compaction.
func (c *compactor) giveWay(ctx context.Context) {
	deadline := time.Now().Add(maxGiveWay)
	for c.r.sched.syncing.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// maxGiveWay bounds the wait of one merge for the syncs running.
const maxGiveWay = 2 * time.Second

// compactionRun returns the files of src (one level, sorted by TXID) to
// merge next into a level whose newest TXID is top: the first file ending
// after top, then the files continuing it without a gap, at most
// maxMergeInputs. A file that starts at or before top (it straddles the
// level's newest file) is included, so that no TXID it holds is left out
// of the level above. A run starts after a gap only where a snapshot
// closed it (a discontinuity); a restore then goes through the snapshot.
func compactionRun(src []ltxFile, top ltx.TXID) []ltxFile {
	var run []ltxFile
	for _, f := range src {
		if f.maxTXID <= top {
			continue
		}
		if len(run) > 0 {
			if f.minTXID != run[len(run)-1].maxTXID+1 || len(run) == maxMergeInputs {
				break
			}
		}
		run = append(run, f)
	}
	return run
}

// listLevel lists one level of a database, sorted by TXID; after, if not
// empty, is the key to list after.
func listLevel(ctx context.Context, store Storage, name string, level int, after string) ([]ltxFile, error) {
	prefix := levelPrefix(name, level)
	var files []ltxFile
	for obj, err := range store.List(ctx, prefix, after) {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		f, err := parseLTXKey(prefix, obj.Key, level)
		if err != nil {
			continue // not an LTX file of this level: never touched
		}
		f.size, f.modTime = obj.Size, obj.ModTime
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b ltxFile) int {
		if a.minTXID != b.minTXID {
			return cmp.Compare(a.minTXID, b.minTXID)
		}
		return cmp.Compare(a.maxTXID, b.maxTXID)
	})
	return files, nil
}

// errCompactionGone is returned when the database was removed while its
// compaction ran.
var errCompactionGone = errors.New("database no longer replicated")
