package replicate

import (
	"context"
	"errors"
	"io"
	"iter"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"
)

// DBStatus is the replication status of one database, as
// [Replicator.Status] reports it.
type DBStatus struct {
	Name  string
	Path  string
	State string // the state machine's state: new, following, handed-over, closed, broken, gone

	// ReplicatedTXID is the last TXID of the database known to be in the
	// target (the target's at start, then each upload's); 0 if none.
	ReplicatedTXID ltx.TXID

	// LastUpload is when an object of the database was last stored; zero
	// if none since the process started.
	LastUpload time.Time

	// Lag is how long the oldest change seen and not yet durable in the
	// target has waited: 0 when everything seen is in the target. Changes
	// are seen by a sync, so the time a commit waits for its sync (at
	// most the sync interval while workers are free) is not counted.
	Lag time.Duration

	Pinned   bool // the WAL is pinned (see the pin budget in docs/design.md)
	Degraded bool // the target does not take its uploads: changes are spooled locally

	// LastError is the error of the database's last sync, "" if it
	// succeeded; FailingSince is when its syncs started failing.
	LastError    string
	FailingSince time.Time

	WALBytes int64 // size of its WAL file (0 if there is none)
}

// States returns the values of [DBStatus].State, in the order of the
// state machine.
func States() []string { return slices.Clone(stateNames[:]) }

// dbStatus is what a database records for its status and the metrics: a
// few words, updated without DB.mu (uploads run without it).
type dbStatus struct {
	added    int64                       // Unix ns when added (set before it is shared)
	durable  atomic.Uint64               // ReplicatedTXID
	uploaded atomic.Int64                // Unix ns of the last object stored
	failure  atomic.Pointer[syncFailure] // nil while its syncs succeed
}

// syncFailure describes the failing syncs of a database.
type syncFailure struct {
	err     string
	since   time.Time
	offline bool // the target does not take uploads (degraded mode)
}

// Status returns the status of every database, in name order. It takes
// each database's mutex briefly (never held during network I/O) and stats
// its WAL; it makes no request to the target.
func (r *Replicator) Status(ctx context.Context) ([]DBStatus, error) {
	dbs := r.DBs()
	slices.SortFunc(dbs, func(a, b *DB) int { return strings.Compare(a.name, b.name) })
	out := make([]DBStatus, 0, len(dbs))
	now := time.Now()
	for _, d := range dbs {
		s, err := d.status(ctx, now)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// status returns d's status at now.
func (d *DB) status(ctx context.Context, now time.Time) (DBStatus, error) {
	s := DBStatus{Name: d.name, Path: d.path, ReplicatedTXID: ltx.TXID(d.stat.durable.Load())}
	if ns := d.stat.uploaded.Load(); ns != 0 {
		s.LastUpload = time.Unix(0, ns)
	}
	f := d.stat.failure.Load()
	if f != nil {
		s.LastError, s.FailingSince, s.Degraded = f.err, f.since, f.offline
	}
	if err := d.mu.lock(ctx); err != nil {
		return DBStatus{}, err
	}
	s.State = d.st.String()
	s.Pinned = d.pin.held()
	var since time.Time // the oldest change not durable
	switch {
	case f != nil && f.offline:
		since = f.since
	case len(d.pending) > 0:
		since = d.pending[0].ts
	case d.st == stateNew:
		since = time.Unix(0, d.stat.added)
	case d.st == stateBroken && f != nil:
		since = f.since
	}
	d.mu.unlock()
	if !since.IsZero() {
		s.Lag = max(now.Sub(since), 0)
	}
	if fi, err := os.Stat(d.walPath); err == nil {
		s.WALBytes = fi.Size()
	}
	return s, nil
}

// noteSync records the outcome of a sync of d for its status.
func (d *DB) noteSync(err error) {
	var off *offlineError
	switch {
	case err == nil:
		d.stat.failure.Store(nil)
		return
	case errors.Is(err, context.Canceled):
		return // stopping: says nothing of the database
	case !errors.As(err, &off):
		d.r.metrics.syncErrors.Add(1)
	}
	f := &syncFailure{err: err.Error(), since: time.Now(), offline: off != nil}
	if prev := d.stat.failure.Load(); prev != nil {
		f.since = prev.since
	}
	d.stat.failure.Store(f)
}

// uploaded records one object of d stored in the target: a segment or
// snapshot ending at txid, of size bytes, whose WAL was read at readAt
// (zero: unknown).
func (d *DB) uploaded(level int, txid ltx.TXID, size int64, readAt time.Time) {
	d.r.countUpload(level, size)
	now := time.Now()
	d.stat.durable.Store(uint64(txid))
	d.stat.uploaded.Store(now.UnixNano())
	if !readAt.IsZero() {
		d.r.metrics.lag.observe(now.Sub(readAt))
	}
}

// noteTransition records what a transition of the state machine tells the
// status and the metrics. The caller holds d.mu; d.st is still the state
// left.
func (d *DB) noteTransition(ev event, next state) {
	if d.st == stateNew && next != stateNew {
		d.stat.durable.Store(uint64(d.txid)) // the target was read
	}
	if next == stateBroken && d.st != stateBroken && d.reason != whyFirst {
		d.r.metrics.discontinuities[discontinuityClass(ev, d.st, d.reason)].Add(1)
	}
}

// Metrics are counters and a histogram of a [Replicator] since it was
// created, for monitoring.
type Metrics struct {
	Stats

	// Requests counts the calls to the target by method: PUT, GET, HEAD,
	// LIST, DELETE (a LIST call may take several requests on S3; a DELETE
	// call of many keys is one request per 1,000 keys).
	Requests map[string]int64

	// UploadErrors counts failed uploads by kind: "unreachable" (the
	// changes were spooled and are retried), "refused" (ErrRefused: the
	// changes were dropped), "conflict" (another writer stored the key).
	UploadErrors map[string]int64

	// SyncErrors counts syncs that failed other than by an outage (a
	// local error, a failed snapshot, a conflict); they are retried with
	// backoff.
	SyncErrors int64

	// Discontinuities counts transitions to Broken (each answered with a
	// snapshot) by reason, one of [DiscontinuityReasons].
	Discontinuities map[string]int64

	// Lag is the distribution of the time from the WAL read of a segment
	// or snapshot to its upload completing.
	Lag Histogram

	Pinned int64 // watched databases pinned now
}

// Histogram is a cumulative histogram, as Prometheus exposes one.
type Histogram struct {
	Bounds []float64 // upper bounds of the buckets, ascending, in seconds (+Inf implied)
	Counts []uint64  // cumulative count of observations <= each bound
	Count  uint64
	Sum    float64 // seconds
}

// Request methods counted by [Metrics].Requests.
var requestMethods = [...]string{"PUT", "GET", "HEAD", "LIST", "DELETE"}

const (
	reqPut = iota
	reqGet
	reqHead
	reqList
	reqDelete
)

// DiscontinuityReasons are the keys of [Metrics].Discontinuities: a fixed
// set of classes of the reasons logged with each discontinuity.
var DiscontinuityReasons = []string{
	"wal_restarted",   // WAL restarted by another process
	"wal_rewritten",   // WAL deleted, truncated or rewritten by another process
	"wal_truncated",   // WAL truncated below the replicated position
	"chain_short",     // the WAL-index holds frames the checksum chain does not reach
	"db_changed",      // the database file written outside a replicated WAL
	"db_replaced",     // the database file replaced
	"db_created",      // the database file created again after a deletion
	"resume_unproven", // at start, the target's position could not be proven in the WAL
	"snapshot_failed", // a snapshot could not be taken (retried)
	"spool_overflow",  // the spool budget was exceeded during an outage
	"refused",         // the target refused an upload for good
	"other",           // a local error while capturing or spooling
}

const (
	discWALRestarted = iota
	discWALRewritten
	discWALTruncated
	discChainShort
	discDBChanged
	discDBReplaced
	discDBCreated
	discResume
	discSnapshotFailed
	discSpoolOverflow
	discRefused
	discOther
	numDiscontinuityClasses
)

// Reasons given by discontinuity callers, matched by their prefix.
const (
	whySpoolOverflow = "spool overflow"
	whyRefused       = "target refused the upload"
)

// discontinuityClass classifies a transition to Broken on ev from st with
// reason into one of DiscontinuityReasons.
func discontinuityClass(ev event, st state, reason string) int {
	switch ev {
	case evNewGen:
		return discWALRestarted
	case evNoWAL:
		return discWALRewritten
	case evShort:
		return discWALTruncated
	case evChainShort:
		return discChainShort
	case evDBChanged:
		return discDBChanged
	case evReplaced:
		return discDBReplaced
	case evCreated:
		return discDBCreated
	case evSnapshotFailed:
		return discSnapshotFailed
	}
	switch {
	case strings.HasPrefix(reason, whyRestarted):
		return discWALRestarted
	case strings.HasPrefix(reason, whyChain):
		return discChainShort
	case strings.HasPrefix(reason, whySpoolOverflow):
		return discSpoolOverflow
	case strings.HasPrefix(reason, whyRefused):
		return discRefused
	case st == stateNew:
		return discResume
	}
	return discOther
}

// Upload error kinds of [Metrics].UploadErrors.
const (
	upErrUnreachable = "unreachable"
	upErrRefused     = "refused"
	upErrConflict    = "conflict"
)

// lagBounds are the buckets of the lag histogram, in seconds: the default
// sync interval is 1 s; an outage shows in the last ones.
var lagBounds = [...]float64{0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 1800}

// metrics are the Replicator's counters beyond Stats.
type metrics struct {
	requests        [len(requestMethods)]atomic.Int64
	unreachable     atomic.Int64
	conflicts       atomic.Int64
	syncErrors      atomic.Int64
	discontinuities [numDiscontinuityClasses]atomic.Int64
	lag             histogram
}

// histogram counts observations in lagBounds buckets (not cumulative).
type histogram struct {
	counts [len(lagBounds) + 1]atomic.Uint64 // the last: +Inf
	sumNs  atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	d = max(d, 0)
	s := d.Seconds()
	i, _ := slices.BinarySearch(lagBounds[:], s)
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: slices.Clone(lagBounds[:]), Counts: make([]uint64, len(lagBounds))}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if i < len(lagBounds) {
			out.Counts[i] = cum
		}
	}
	out.Count = cum
	out.Sum = time.Duration(h.sumNs.Load()).Seconds()
	return out
}

// Metrics returns the replicator's counters. It takes no lock and reads
// no database: it is cheap whatever the number of databases.
func (r *Replicator) Metrics() Metrics {
	m := Metrics{
		Stats:           r.Stats(),
		Requests:        make(map[string]int64, len(requestMethods)),
		SyncErrors:      r.metrics.syncErrors.Load(),
		Discontinuities: make(map[string]int64, numDiscontinuityClasses),
		Lag:             r.metrics.lag.snapshot(),
		Pinned:          r.pinned.Load(),
		UploadErrors: map[string]int64{
			upErrUnreachable: r.metrics.unreachable.Load(),
			upErrRefused:     r.stats.refusals.Load(),
			upErrConflict:    r.metrics.conflicts.Load(),
		},
	}
	for i, name := range requestMethods {
		m.Requests[name] = r.metrics.requests[i].Load()
	}
	for i, name := range DiscontinuityReasons {
		m.Discontinuities[name] = r.metrics.discontinuities[i].Load()
	}
	return m
}

// meteredStore counts the calls to the target by method.
type meteredStore struct {
	Storage
	n *[len(requestMethods)]atomic.Int64
}

func (s meteredStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	s.n[reqPut].Add(1)
	return s.Storage.Put(ctx, key, r, size, meta)
}

func (s meteredStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.n[reqGet].Add(1)
	return s.Storage.Get(ctx, key, off, n)
}

func (s meteredStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	s.n[reqHead].Add(1)
	return s.Storage.Head(ctx, key)
}

func (s meteredStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	s.n[reqList].Add(1)
	return s.Storage.List(ctx, prefix, startAfter)
}

func (s meteredStore) Delete(ctx context.Context, keys ...string) error {
	s.n[reqDelete].Add(1)
	return s.Storage.Delete(ctx, keys...)
}

// Unwrap returns the target.
func (s meteredStore) Unwrap() Storage { return s.Storage }
