// Package replicate is walsync's engine: it captures committed WAL
// transactions of SQLite databases written by any process, encodes them as
// LTX segments and uploads them through one shared, bounded uploader to a
// [Storage]; it also takes snapshots and restores databases to a point in
// time.
//
// Usage:
//
//	r := replicate.New(store, replicate.Options{Logger: logger})
//	if _, err := r.Add(ctx, "/var/lib/app/tenant1/app.db", ""); err != nil { ... }
//	err := r.Run(ctx) // until ctx is cancelled; then flushes and returns
//
// One process serves many databases with a fixed number of goroutines: one
// inotify reader, one scheduler and Options.Concurrency upload workers. An
// idle database costs a small struct and two file descriptors (the locks
// that keep SQLite from discarding frames not yet replicated), no goroutine,
// timer, buffer or SQLite connection.
package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for [Options].
const (
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = 24 * time.Hour
	DefaultCheckpointFrames = 1000
	DefaultMaxSegmentBytes  = 64 << 20
	DefaultConcurrency      = 4
	DefaultShutdownTimeout  = 30 * time.Second

	// DefaultRetention is how long restore points are kept (Litestream's
	// default too).
	DefaultRetention = 24 * time.Hour
	// DefaultL0Retention is how long a segment (level 0) is kept after a
	// level-1 file covering it exists: restore points at every sync for
	// this long, at the level-1 interval before.
	DefaultL0Retention = 5 * time.Minute
	// DefaultCompactionConcurrency bounds the compactions running at the
	// same time, all databases together.
	DefaultCompactionConcurrency = 2
)

// DefaultCompactionIntervals are the intervals of compaction levels 1, 2
// and 3, Litestream v0.5's defaults: every 30 s the segments of a database
// are merged into one level-1 file, every 5 min the level-1 files into one
// level-2 file, every hour the level-2 files into one level-3 file.
var DefaultCompactionIntervals = []time.Duration{30 * time.Second, 5 * time.Minute, time.Hour}

// SyncImmediately, as [Options].SyncInterval, uploads each database's
// changes as soon as they are seen instead of gathering them for an
// interval: one PUT per commit of a busy database.
const SyncImmediately time.Duration = -1

// Options configures a [Replicator]. Zero values select the defaults.
type Options struct {
	// SyncInterval is how long changes of one database are gathered into one
	// segment. Zero selects DefaultSyncInterval; [SyncImmediately] (any
	// negative value) uploads at once.
	SyncInterval time.Duration

	// SnapshotInterval is how often an active database gets a full snapshot.
	SnapshotInterval time.Duration

	// CheckpointFrames is the WAL length, in frames, at which walsync runs a
	// checkpoint and restarts the WAL once everything in it is replicated.
	CheckpointFrames int

	// MaxSegmentBytes bounds the WAL bytes in one segment; a longer backlog
	// is split at transaction boundaries.
	MaxSegmentBytes int64

	// Concurrency is the number of databases synced at the same time.
	Concurrency int

	// SpoolDir holds segments too large to keep in memory while they are
	// uploaded. Default: os.TempDir().
	SpoolDir string

	// SpoolMax bounds the disk space, in bytes, that the changes the target
	// did not take may use in SpoolDir, all databases together (degraded
	// mode: see docs/design.md). A database whose changes do not fit loses
	// its restore points since the target stopped taking them: its WAL is
	// released and a snapshot restarts its chain when the target is back.
	// Default: a quarter of SpoolDir's free space when the Replicator is
	// created (at least 64 MiB).
	SpoolMax int64

	// CompactionIntervals are the intervals of compaction levels 1, 2, ...
	// (at most 8 levels, each interval a multiple of the one before).
	// Nil selects DefaultCompactionIntervals; an empty non-nil slice turns
	// compaction off.
	CompactionIntervals []time.Duration

	// CompactionConcurrency bounds the compactions running at the same
	// time, all databases together. Default DefaultCompactionConcurrency.
	CompactionConcurrency int

	// Retention is how long restore points are kept: older files that no
	// restore point inside the window needs are deleted. Zero selects
	// DefaultRetention; negative keeps everything.
	Retention time.Duration

	// L0Retention is how long a segment is kept once a level-1 file covers
	// it. Zero selects DefaultL0Retention; negative keeps segments for the
	// whole Retention.
	L0Retention time.Duration

	// AfterCompactions, if set, is called on the compactor's goroutine
	// each time the compactions started together (at a level boundary)
	// are all done. walsync watch gives the memory of the merges back to
	// the system there (debug.FreeOSMemory); a library user rarely needs
	// it.
	AfterCompactions func()

	// ShutdownTimeout bounds the final upload when [Replicator.Run] stops.
	ShutdownTimeout time.Duration

	// MaxPinned bounds the databases whose WAL is pinned at a time (two
	// descriptors each). Beyond it, the least recently written databases
	// are watched without a pin and pinned again at their next write.
	// Default: what the open-file limit allows, keeping 1,024 in reserve.
	MaxPinned int

	// LeaseTTL is how long a database's lease in the target lasts after
	// its last renewal: another process may take the database over once
	// its holder has not uploaded it for this long (see [ErrLeased]).
	// Negative: no lease (the caller fences writers itself).
	LeaseTTL time.Duration

	// Takeover makes Add take a database's lease even while another
	// process holds it; that process stops replicating the database at its
	// next renewal. For a holder known to be gone.
	Takeover bool

	// Logger receives the engine's logs. Default: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.SnapshotInterval <= 0 {
		o.SnapshotInterval = DefaultSnapshotInterval
	}
	if o.CheckpointFrames <= 0 {
		o.CheckpointFrames = DefaultCheckpointFrames
	}
	if o.MaxSegmentBytes <= 0 {
		o.MaxSegmentBytes = DefaultMaxSegmentBytes
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	if o.SpoolMax <= 0 {
		o.SpoolMax = defaultSpoolMax(o.SpoolDir)
	}
	if o.MaxPinned <= 0 {
		o.MaxPinned = defaultMaxPinned()
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CompactionIntervals == nil {
		o.CompactionIntervals = DefaultCompactionIntervals
	}
	if o.CompactionConcurrency <= 0 {
		o.CompactionConcurrency = DefaultCompactionConcurrency
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.L0Retention == 0 {
		o.L0Retention = DefaultL0Retention
	}
	return o
}

// CheckCompactionIntervals reports whether intervals can be the intervals
// of compaction levels 1, 2, ...: at most 8 levels, each interval positive
// and a multiple of the one before (so that a boundary of a level is one of
// every level below, as Litestream requires too).
func CheckCompactionIntervals(intervals []time.Duration) error {
	if len(intervals) > SnapshotLevel-1 {
		return fmt.Errorf("compaction intervals: %d levels, at most %d", len(intervals), SnapshotLevel-1)
	}
	for i, iv := range intervals {
		if iv <= 0 {
			return fmt.Errorf("compaction intervals: level %d: %s is not positive", i+1, iv)
		}
		if i > 0 && iv%intervals[i-1] != 0 {
			return fmt.Errorf("compaction intervals: level %d: %s is not a multiple of level %d's %s", i+1, iv, i, intervals[i-1])
		}
	}
	return nil
}

// Stats are counters of a [Replicator] since it was created.
type Stats struct {
	Segments    int64 // segments uploaded
	Snapshots   int64 // snapshots uploaded
	Checkpoints int64 // WAL restarts done by walsync
	Bytes       int64 // bytes uploaded
	Errors      int64 // failed sync attempts (retried)
	PinnedPeak  int64 // most watched databases pinned at once (two descriptors each)

	Spooled        int64 // segments kept on local disk because the target did not take them
	SpoolOverflows int64 // times a database's spooled changes exceeded Options.SpoolMax and were dropped
	Refusals       int64 // times the target refused a database's upload for good (ErrRefused) and its changes were dropped
	SpoolBytes     int64 // disk space the spooled changes use now

	Compactions      int64 // compacted files uploaded (levels 1..8)
	CompactedBytes   int64 // bytes of the compacted files uploaded
	CompactionErrors int64 // failed compactions and deletions (retried)
	Deleted          int64 // files deleted by retention
}

type stats struct {
	segments, snapshots, checkpoints, bytes, errors atomic.Int64
	spooled, spoolOverflows, refusals               atomic.Int64
}

// countUpload counts one uploaded object of size bytes.
func (r *Replicator) countUpload(level int, size int64) {
	if level == SnapshotLevel {
		r.stats.snapshots.Add(1)
	} else {
		r.stats.segments.Add(1)
	}
	r.stats.bytes.Add(size)
}

// defaultMaxPinned derives the pin budget from the open-file limit (Go
// raises the soft limit to the hard one at start).
func defaultMaxPinned() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 20
	}
	return max(16, (int(lim.Cur)-1024)/2)
}

// Replicator replicates a set of databases into one [Storage].
type Replicator struct {
	store Storage
	opts  Options
	log   *slog.Logger
	sched *scheduler
	watch *watcher
	fence *fence // nil: no leases
	comp  *compactor
	stats stats

	mu     sync.Mutex
	byPath map[string]*DB // +checklocks:mu
	byName map[string]*DB // +checklocks:mu

	pinned     atomic.Int64 // watched databases holding a pin
	pinnedPeak atomic.Int64 // most pinned at once
	spoolUsed  atomic.Int64 // bytes of the backlogs (degraded mode)

	metrics metrics // counters beyond stats (metrics.go)

	testHooks testHooks // set by tests only, before use
}

// testHooks let white-box tests act at points no external event can reach.
type testHooks struct {
	afterScan      func()       // after a capture's scan, before its pages are re-read
	beforeTruncate func() error // before a TRUNCATE checkpoint; an error fails it
}

// New returns a Replicator that uploads into store.
func New(store Storage, opts Options) *Replicator {
	opts = opts.withDefaults()
	r := &Replicator{
		opts:   opts,
		log:    opts.Logger,
		byPath: make(map[string]*DB),
		byName: make(map[string]*DB),
	}
	store = meteredStore{Storage: store, n: &r.metrics.requests}
	r.store = store
	r.sched = newScheduler(opts.SyncInterval, opts.Concurrency, r.log)
	r.watch = newWatcher(r)
	r.comp = newCompactor(r)
	if opts.LeaseTTL > 0 {
		r.fence = newFence(store, opts.LeaseTTL, opts.Takeover, r.log)
		r.fence.onLost = r.forgetName
		r.store = fencedStore{Storage: store, f: r.fence}
	}
	return r
}

// Add starts replicating the database at path under name ("" selects the
// default, [NameFromPath]). It checks the file and that the target can hold
// the name's keys (an error matching [ErrBadName]), pins the WAL and takes
// the database's lease in the target (an error matching [ErrLeased] while
// another process holds it); the first upload happens in [Replicator.Run]
// or [Replicator.Sync]. Adding a second database under a name already in
// use is an error, as is adding the same file twice.
func (r *Replicator) Add(ctx context.Context, path, name string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", path, err)
	}
	return r.add(ctx, abs, name, nil, false, DBOptions{})
}

// add registers the database at the absolute path abs.
// viaDir marks a database added by a WatchDir root; o are its overrides.
func (r *Replicator) add(ctx context.Context, abs, name string, app *appState, viaDir bool, o DBOptions) (*DB, error) {
	var err error
	if name == "" {
		name, err = NameFromPath(abs)
	} else {
		name, err = CleanName(name)
	}
	if err == nil {
		err = checkName(r.store, name)
	}
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", abs, err)
	}
	r.mu.Lock()
	if other := r.byName[name]; other != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("add %s: name %q is already used by %s", abs, name, other.path)
	}
	if r.byPath[abs] != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("add %s: already replicated", abs)
	}
	d := newDB(r, abs, name)
	d.app, d.viaDir, d.opts = app, viaDir, o
	r.byPath[abs], r.byName[name] = d, d
	r.mu.Unlock()

	if err := d.openLocal(ctx); err != nil {
		r.remove(d)
		return nil, fmt.Errorf("add %s: %w", abs, err)
	}
	if r.fence != nil {
		var le *LeaseError
		if err := r.fence.acquire(ctx, name); errors.As(err, &le) || (err != nil && ctx.Err() != nil) {
			r.remove(d)
			d.close()
			if le != nil {
				le.Name = name
			}
			return nil, fmt.Errorf("add %s: %w", abs, err)
		} else if err != nil {
			// The target cannot be reached: the database is watched (its
			// WAL is not held while the target stays down) and the lease
			// is taken before the target is first read (DB.resume).
			r.log.Warn("lease not taken yet: the target cannot be reached; taken before the first upload", "db", name, "error", err)
			d.leaseLater = true
		}
	}
	if err := r.watch.add(d); err != nil {
		r.remove(d)
		d.close()
		r.releaseLease(d.name)
		return nil, fmt.Errorf("add %s: %w", abs, err)
	}
	r.sched.notify(d)
	r.enforcePinBudget()
	return d, nil
}

// enforcePinBudget unpins the least recently written idle databases while
// more than Options.MaxPinned are pinned. It never waits for a database
// that is busy.
func (r *Replicator) enforcePinBudget() {
	over := r.pinned.Load() - int64(r.opts.MaxPinned)
	if over <= 0 {
		return
	}
	dbs := r.DBs()
	slices.SortFunc(dbs, func(a, b *DB) int { return a.lastActiveAt().Compare(b.lastActiveAt()) })
	for _, d := range dbs {
		if over <= 0 {
			return
		}
		if r.sched.busy(d) || !d.mu.tryLock() {
			continue
		}
		if d.pin.held() && d.app == nil && len(d.pending) == 0 && d.st != stateNew {
			d.unpin()
			over--
		}
		d.mu.unlock()
	}
}

func (r *Replicator) remove(d *DB) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byPath[d.path] == d {
		delete(r.byPath, d.path)
	}
	if r.byName[d.name] == d {
		delete(r.byName, d.name)
	}
}

// afterSync releases a database that needs no more syncs: an in-app
// database its application closed, once uploaded, or a deleted database
// under a WatchDir root (the root adds it again if it reappears).
func (r *Replicator) afterSync(d *DB) {
	if d.releasable() || (d.isGone() && r.watch.underRoot(d)) {
		r.forget(d)
	}
}

// forget stops replicating d.
func (r *Replicator) forget(d *DB) {
	r.remove(d)
	r.watch.remove(d)
	r.sched.forget(d)
	r.comp.forget(d)
	if err := d.close(); err != nil {
		r.log.Warn("release database", "path", d.path, "error", err)
	}
	r.releaseLease(d.name)
}

// forgetName stops replicating the database named name, once its sync in
// progress (if any) returns: another process took over its lease.
func (r *Replicator) forgetName(name string) {
	r.mu.Lock()
	d := r.byName[name]
	r.mu.Unlock()
	if d != nil {
		r.forget(d)
	}
}

// releaseLease gives up the lease of name, bounded by ShutdownTimeout.
func (r *Replicator) releaseLease(name string) {
	if r.fence == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.ShutdownTimeout)
	defer cancel()
	if err := r.fence.release(ctx, name); err != nil {
		r.log.Warn("release lease", "db", name, "error", err)
	}
}

// DBs returns the databases being replicated.
func (r *Replicator) DBs() []*DB {
	r.mu.Lock()
	defer r.mu.Unlock()
	dbs := make([]*DB, 0, len(r.byPath))
	for _, d := range r.byPath {
		dbs = append(dbs, d)
	}
	return dbs
}

// Run watches the databases and uploads their changes until ctx is
// cancelled. Then it uploads everything committed (bounded by
// Options.ShutdownTimeout), releases the databases and returns nil, or the
// error of that final flush.
func (r *Replicator) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { r.sched.run(runCtx) })
	wg.Go(func() { r.watch.run(runCtx) })
	wg.Go(func() { r.comp.run(runCtx) })
	<-ctx.Done()
	cancel()
	wg.Wait()

	flushCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), r.opts.ShutdownTimeout)
	defer stop()
	err := r.flushAll(flushCtx)
	return errors.Join(err, r.Close())
}

// Sync uploads everything committed to the databases before the call and
// returns when it is durable in the target, or the first error.
func (r *Replicator) Sync(ctx context.Context) error {
	if r.sched.running() {
		return r.sched.flush(ctx, r.DBs())
	}
	return r.flushAll(ctx)
}

// flushAll syncs every database on the calling goroutine.
func (r *Replicator) flushAll(ctx context.Context) error {
	var errs []error
	for _, d := range r.DBs() {
		if err := d.sync(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", d.name, err))
			continue
		}
		r.afterSync(d)
	}
	return errors.Join(errs...)
}

// Close releases every database's locks, its lease in the target (two
// small requests per database, bounded by Options.ShutdownTimeout) and the
// inotify watcher. It uploads nothing; call Sync first.
func (r *Replicator) Close() error {
	var errs []error
	for _, d := range r.DBs() {
		errs = append(errs, d.close())
	}
	if r.fence != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.ShutdownTimeout)
		errs = append(errs, r.fence.releaseAll(ctx, r.opts.Concurrency))
		cancel()
		r.fence.close()
	}
	errs = append(errs, r.watch.close())
	r.comp.close()
	return errors.Join(errs...)
}

// Stats returns the replicator's counters.
func (r *Replicator) Stats() Stats {
	return Stats{
		Segments:    r.stats.segments.Load(),
		Snapshots:   r.stats.snapshots.Load(),
		Checkpoints: r.stats.checkpoints.Load(),
		Bytes:       r.stats.bytes.Load(),
		Errors:      r.stats.errors.Load(),
		PinnedPeak:  r.pinnedPeak.Load(),

		Spooled:        r.stats.spooled.Load(),
		SpoolOverflows: r.stats.spoolOverflows.Load(),
		Refusals:       r.stats.refusals.Load(),
		SpoolBytes:     r.spoolUsed.Load(),

		Compactions:      r.metrics.compactions.Load(),
		CompactedBytes:   r.metrics.compactedBytes.Load(),
		CompactionErrors: r.metrics.compactionErrors.Load(),
		Deleted:          r.metrics.deleted.Load(),
	}
}

// notePinned counts one more pinned database.
func (r *Replicator) notePinned() {
	n := r.pinned.Add(1)
	for {
		peak := r.pinnedPeak.Load()
		if n <= peak || r.pinnedPeak.CompareAndSwap(peak, n) {
			return
		}
	}
}
