package metrics

import (
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/walsync/walsync/replicate"
)

// DefaultMaxDBs is the default of [Options].MaxDBs.
const DefaultMaxDBs = 100

// Options configures [Write].
type Options struct {
	// MaxDBs bounds the databases that get their own walsync_db_* series
	// (label db): the first MaxDBs in name order. The others are folded
	// into one series of each walsync_db_* metric without the db label
	// (the largest lag and WAL, the number pinned, degraded or failing),
	// and walsync_db_folded counts them. 0 folds every database.
	MaxDBs int
}

// Write writes the metrics of a replicator, m, and the status of its
// databases, dbs (in name order, as [replicate.Replicator.Status] returns
// them), to w.
func Write(w io.Writer, m replicate.Metrics, dbs []replicate.DBStatus, opts Options) error {
	var e expo
	writeCounters(&e, m)
	writeDatabases(&e, m, dbs)
	writePerDB(&e, dbs, max(opts.MaxDBs, 0))
	writeProcess(&e)
	_, err := w.Write(e.b)
	return err
}

func writeCounters(e *expo, m replicate.Metrics) {
	e.single("walsync_segments_uploaded_total", typeCounter, "Segments (LTX files of WAL transactions) stored in the target.", float64(m.Segments))
	e.single("walsync_snapshots_uploaded_total", typeCounter, "Snapshots stored in the target.", float64(m.Snapshots))
	e.single("walsync_uploaded_bytes_total", typeCounter, "Bytes of segments and snapshots stored in the target.", float64(m.Bytes))
	labelled(e, "walsync_requests_total", typeCounter, "Calls to the target by method (a LIST call may take several S3 requests).", "method", m.Requests)
	labelled(e, "walsync_upload_errors_total", typeCounter, "Failed uploads by kind: unreachable (changes spooled, retried), refused (changes dropped, snapshot later), conflict (another writer stored the key).", "kind", m.UploadErrors)
	e.single("walsync_sync_errors_total", typeCounter, "Syncs of a database that failed other than by an outage of the target; retried with backoff.", float64(m.SyncErrors))
	e.single("walsync_checkpoints_total", typeCounter, "WAL restarts handed over to SQLite once everything in the WAL was replicated.", float64(m.Checkpoints))
	labelled(e, "walsync_discontinuities_total", typeCounter, "Replication discontinuities (each answered with a snapshot) by reason.", "reason", m.Discontinuities)
	e.single("walsync_spooled_segments_total", typeCounter, "Segments kept on local disk because the target did not take them.", float64(m.Spooled))
	e.single("walsync_spool_overflows_total", typeCounter, "Times a database's spooled changes exceeded the spool budget and were dropped (a snapshot restarts its chain).", float64(m.SpoolOverflows))
	e.single("walsync_compactions_total", typeCounter, "Compacted files (levels 1 and up) stored in the target.", float64(m.Compactions))
	e.single("walsync_compacted_bytes_total", typeCounter, "Bytes of the compacted files stored in the target.", float64(m.CompactedBytes))
	e.single("walsync_compaction_errors_total", typeCounter, "Failed compactions and retention deletions; retried at the next interval.", float64(m.CompactionErrors))
	e.single("walsync_deleted_files_total", typeCounter, "Files deleted by compaction (segments a compacted file covers) and retention.", float64(m.Deleted))
	e.single("walsync_spool_bytes", typeGauge, "Disk space the spooled changes use now.", float64(m.SpoolBytes))
	e.header("walsync_replication_lag_seconds", typeHistogram, "Time from the WAL read of a segment or snapshot to its upload completing.")
	e.histogram("walsync_replication_lag_seconds", m.Lag.Bounds, m.Lag.Counts, m.Lag.Count, m.Lag.Sum)
}

// labelled writes a family of one sample per key of values, in key order.
func labelled(e *expo, name, typ, help, label string, values map[string]int64) {
	e.header(name, typ, help)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e.sample(name, float64(values[k]), label, k)
	}
}

// writeDatabases writes the process-wide gauges derived from every
// database, whatever MaxDBs.
func writeDatabases(e *expo, m replicate.Metrics, dbs []replicate.DBStatus) {
	states := replicate.States()
	byState := make(map[string]int64, len(states))
	for _, s := range states {
		byState[s] = 0
	}
	var degraded, failing int
	var lagMax time.Duration
	var walMax int64
	for _, d := range dbs {
		byState[d.State]++
		if d.Degraded {
			degraded++
		}
		if d.LastError != "" {
			failing++
		}
		lagMax = max(lagMax, d.Lag)
		walMax = max(walMax, d.WALBytes)
	}
	e.single("walsync_databases", typeGauge, "Databases replicated.", float64(len(dbs)))
	e.header("walsync_databases_state", typeGauge, "Databases by state of the replication state machine (docs/design.md).")
	for _, s := range states {
		e.sample("walsync_databases_state", float64(byState[s]), "state", s)
	}
	e.single("walsync_databases_pinned", typeGauge, "Watched databases whose WAL is pinned (two descriptors each).", float64(m.Pinned))
	e.single("walsync_databases_degraded", typeGauge, "Databases whose changes the target does not take (spooled locally).", float64(degraded))
	e.single("walsync_databases_failing", typeGauge, "Databases whose last sync failed.", float64(failing))
	e.single("walsync_lag_max_seconds", typeGauge, "Largest current lag of a database: how long its oldest change not yet durable in the target has waited.", lagMax.Seconds())
	e.single("walsync_wal_max_bytes", typeGauge, "Size of the largest WAL file of a database.", float64(walMax))
}

// writePerDB writes the walsync_db_* families: a series per database for
// the first maxDBs, one folded series for the others.
func writePerDB(e *expo, dbs []replicate.DBStatus, maxDBs int) {
	shown, folded := dbs, []replicate.DBStatus(nil)
	if len(dbs) > maxDBs {
		shown, folded = dbs[:maxDBs], dbs[maxDBs:]
	}
	type family struct {
		name, help string
		value      func(d replicate.DBStatus) float64
		fold       int // how the folded databases are summed up
	}
	const (
		noFold = iota
		foldMax
		foldSum
	)
	families := []family{
		{"walsync_db_lag_seconds", "How long the database's oldest change not yet durable in the target has waited (folded: the largest).",
			func(d replicate.DBStatus) float64 { return d.Lag.Seconds() }, foldMax},
		{"walsync_db_replicated_txid", "Last TXID of the database known to be in the target.",
			func(d replicate.DBStatus) float64 { return float64(d.ReplicatedTXID) }, noFold},
		{"walsync_db_last_upload_timestamp_seconds", "When an object of the database was last stored (Unix time; 0: none since start).",
			func(d replicate.DBStatus) float64 { return unixSeconds(d.LastUpload) }, noFold},
		{"walsync_db_wal_bytes", "Size of the database's WAL file (folded: the largest).",
			func(d replicate.DBStatus) float64 { return float64(d.WALBytes) }, foldMax},
		{"walsync_db_pinned", "1 if the database's WAL is pinned (folded: how many are).",
			func(d replicate.DBStatus) float64 { return bool01(d.Pinned) }, foldSum},
		{"walsync_db_degraded", "1 if the target does not take the database's changes (folded: how many).",
			func(d replicate.DBStatus) float64 { return bool01(d.Degraded) }, foldSum},
		{"walsync_db_failing", "1 if the database's last sync failed (folded: how many).",
			func(d replicate.DBStatus) float64 { return bool01(d.LastError != "") }, foldSum},
	}
	for _, f := range families {
		foldIt := len(folded) > 0 && f.fold != noFold
		if len(shown) == 0 && !foldIt {
			continue // a family without samples is left out
		}
		e.header(f.name, typeGauge, f.help)
		for _, d := range shown {
			e.sample(f.name, f.value(d), "db", d.Name)
		}
		if !foldIt {
			continue
		}
		v := 0.0
		for _, d := range folded {
			if f.fold == foldMax {
				v = max(v, f.value(d))
			} else {
				v += f.value(d)
			}
		}
		e.sample(f.name, v)
	}
	e.single("walsync_db_folded", typeGauge, "Databases without walsync_db_* series of their own (over --metrics-max-dbs), folded into the series without the db label.", float64(len(folded)))
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// writeProcess writes the process's resident memory and goroutines.
func writeProcess(e *expo) {
	if rss, ok := residentBytes(); ok {
		e.single("process_resident_memory_bytes", typeGauge, "Resident memory size in bytes.", float64(rss))
	}
	e.single("go_goroutines", typeGauge, "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
}

// residentBytes reads the process's resident set size from /proc.
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
