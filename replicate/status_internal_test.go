package replicate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatus: a database's status follows its replication: replicated
// TXID, last upload and no lag once synced; degraded with the error and a
// growing lag while the target is down, the replicated TXID unchanged;
// back to normal once the target takes the backlog.
func TestStatus(t *testing.T) {
	f, ds := newOutageFixture(t, Options{SyncInterval: SyncImmediately})
	f.write(3)
	f.sync()
	st := f.status()
	if st.Name != "db" || st.Path != f.path || st.State != "following" {
		t.Fatalf("status %+v, want db at %s following", st, f.path)
	}
	if got, want := st.ReplicatedTXID, f.d.TXID(); got != want || got == 0 {
		t.Fatalf("ReplicatedTXID=%s, want %s (not 0)", got, want)
	}
	if st.LastUpload.IsZero() || time.Since(st.LastUpload) > time.Minute {
		t.Fatalf("LastUpload=%v, want just now", st.LastUpload)
	}
	if st.Lag != 0 || st.Degraded || st.LastError != "" || !st.Pinned || st.WALBytes == 0 {
		t.Fatalf("status %+v, want no lag, not degraded, no error, pinned, a WAL", st)
	}
	synced := st.ReplicatedTXID

	ds.down.Store(true)
	f.writeRound(1)
	f.syncOffline()
	time.Sleep(10 * time.Millisecond) // the lag counts from the failure
	st = f.status()
	if !st.Degraded || !strings.Contains(st.LastError, errTargetDown.Error()) || st.FailingSince.IsZero() {
		t.Fatalf("status during the outage %+v, want degraded with %q", st, errTargetDown)
	}
	if st.Lag <= 0 || st.ReplicatedTXID != synced {
		t.Fatalf("status during the outage: lag %v, replicated %s; want a lag, still %s", st.Lag, st.ReplicatedTXID, synced)
	}
	if got := f.r.Metrics().UploadErrors["unreachable"]; got == 0 {
		t.Fatalf("UploadErrors[unreachable]=%d, want > 0", got)
	}

	ds.down.Store(false)
	f.sync()
	st = f.status()
	if st.Degraded || st.LastError != "" || st.Lag != 0 || st.ReplicatedTXID != f.d.TXID() || st.ReplicatedTXID <= synced {
		t.Fatalf("status after the outage %+v, want replicated up to %s, no error, no lag", st, f.d.TXID())
	}
}

func (f *fixture) status() DBStatus {
	f.t.Helper()
	sts, err := f.r.Status(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(sts) != 1 {
		f.t.Fatalf("Status returned %d databases, want 1", len(sts))
	}
	return sts[0]
}

// TestMetricsCounts: requests are counted by method, each uploaded object
// once in the lag histogram, and the first snapshot is no discontinuity.
func TestMetricsCounts(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately})
	f.write(3)
	f.sync()
	f.write(2)
	f.sync()
	m := f.r.Metrics()
	uploads := uint64(m.Segments + m.Snapshots)
	if m.Segments == 0 || m.Snapshots != 1 {
		t.Fatalf("segments %d, snapshots %d; want some, 1", m.Segments, m.Snapshots)
	}
	// Every upload is a PUT; so is the lease.
	if got := m.Requests["PUT"]; got < int64(uploads) {
		t.Fatalf("Requests[PUT]=%d, want at least the %d uploads", got, uploads)
	}
	if m.Requests["LIST"] == 0 {
		t.Fatal("Requests[LIST]=0: the first sync lists the target")
	}
	if m.Lag.Count != uploads || m.Lag.Counts[len(m.Lag.Counts)-1] > m.Lag.Count || m.Lag.Sum <= 0 {
		t.Fatalf("lag histogram %+v, want %d observations", m.Lag, uploads)
	}
	for reason, n := range m.Discontinuities {
		if n != 0 {
			t.Fatalf("Discontinuities[%s]=%d, want none (the first snapshot is not one)", reason, n)
		}
	}
	if len(m.Discontinuities) != len(DiscontinuityReasons) {
		t.Fatalf("Discontinuities has %d reasons, want all %d", len(m.Discontinuities), len(DiscontinuityReasons))
	}
}

// TestMetricsDiscontinuity: a discontinuity is counted once, under its
// reason class.
func TestMetricsDiscontinuity(t *testing.T) {
	f := newFixture(t, Options{SyncInterval: SyncImmediately})
	f.write(5)
	f.sync()
	other := filepath.Join(f.dir, "other.sqlite")
	runSQLite(t, other, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB); INSERT INTO t VALUES (42, x'00');")
	if err := os.Rename(other, f.path); err != nil {
		t.Fatal(err)
	}
	f.sync()
	f.wantSnapshot("database file replaced")
	for reason, n := range f.r.Metrics().Discontinuities {
		want := int64(0)
		if reason == "db_replaced" {
			want = 1
		}
		if n != want {
			t.Errorf("Discontinuities[%s]=%d, want %d", reason, n, want)
		}
	}
}

// TestDiscontinuityClass: every reason the engine gives maps to its class.
func TestDiscontinuityClass(t *testing.T) {
	for _, c := range []struct {
		ev     event
		st     state
		reason string
		want   string
	}{
		{evNewGen, stateFollowing, whyRestarted + " (salt 1-2, expected 3-4)", "wal_restarted"},
		{evNoWAL, stateFollowing, whyRewritten, "wal_rewritten"},
		{evShort, stateFollowing, whyShort, "wal_truncated"},
		{evChainShort, stateHandedOver, whyChain + " (frame 3 of 9)", "chain_short"},
		{evDBChanged, stateClosed, whyChanged, "db_changed"},
		{evReplaced, stateFollowing, whyReplaced, "db_replaced"},
		{evCreated, stateGone, whyCreated, "db_created"},
		{evSnapshotFailed, stateFollowing, "snapshot failed", "snapshot_failed"},
		{evUnproven, stateClosed, whyRestarted + " (salt 1-2, expected 3-4)", "wal_restarted"},
		{evUnproven, stateFollowing, whyChain + " (raw copy does not verify)", "chain_short"},
		{evUnproven, stateFollowing, fmt.Sprintf("%s (%v)", whySpoolOverflow, errSpoolFull), "spool_overflow"},
		{evUnproven, stateFollowing, fmt.Sprintf("%s (%v)", whyRefused, ErrRefused), "refused"},
		{evUnproven, stateNew, "WAL changed while walsync was not running", "resume_unproven"},
		{evUnproven, stateNew, "newest file in the target does not verify", "resume_unproven"},
		{evUnproven, stateFollowing, "capture before WAL reset failed: EIO", "other"},
	} {
		if got := DiscontinuityReasons[discontinuityClass(c.ev, c.st, c.reason)]; got != c.want {
			t.Errorf("class of %s from %s (%q) = %s, want %s", c.ev, c.st, c.reason, got, c.want)
		}
	}
}

// TestLagHistogram: observations land in the first bucket whose bound
// holds them, counts are cumulative, and the sum is in seconds.
func TestLagHistogram(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{50 * time.Millisecond, time.Second, 2 * time.Hour} {
		h.observe(d)
	}
	s := h.snapshot()
	at := func(bound float64) uint64 {
		for i, b := range s.Bounds {
			if b == bound {
				return s.Counts[i]
			}
		}
		t.Fatalf("no bucket %v", bound)
		return 0
	}
	if got := at(0.1); got != 1 {
		t.Errorf("bucket 0.1: %d, want 1", got)
	}
	if got := at(1); got != 2 {
		t.Errorf("bucket 1 (cumulative, 1 s included): %d, want 2", got)
	}
	if got := s.Counts[len(s.Counts)-1]; got != 2 {
		t.Errorf("last finite bucket: %d, want 2 (2 h is only in +Inf)", got)
	}
	if s.Count != 3 || s.Sum < 7201 || s.Sum > 7201.1 {
		t.Errorf("count %d sum %v, want 3 and 7201.05", s.Count, s.Sum)
	}
}
