package replicate

import (
	"context"
	"errors"
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
	d.r.comp.uploaded(d, level, txid)
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
