package replicate

import (
	"context"
	"io"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

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

	compactions, compactedBytes, compactionErrors, deleted atomic.Int64
	stagedInputs                                           atomic.Int64 // compaction inputs read from the stage, not the target
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
