package metrics

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/replicate"
)

func sampleMetrics() replicate.Metrics {
	m := replicate.Metrics{
		Stats:           replicate.Stats{Segments: 5, Snapshots: 2, Bytes: 12345, Checkpoints: 3, Spooled: 4, SpoolOverflows: 1, SpoolBytes: 999},
		Requests:        map[string]int64{"PUT": 7, "GET": 2, "HEAD": 1, "LIST": 3, "DELETE": 0},
		UploadErrors:    map[string]int64{"unreachable": 2, "refused": 0, "conflict": 1},
		SyncErrors:      6,
		Discontinuities: map[string]int64{},
		Pinned:          2,
		Lag: replicate.Histogram{Bounds: []float64{0.5, 1, 5}, Counts: []uint64{1, 3, 4},
			Count: 5, Sum: 70.25},
	}
	for _, r := range replicate.DiscontinuityReasons {
		m.Discontinuities[r] = 0
	}
	m.Discontinuities["db_replaced"] = 2
	return m
}

func write(t *testing.T, m replicate.Metrics, dbs []replicate.DBStatus, opts Options) *exposition {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, m, dbs, opts); err != nil {
		t.Fatal(err)
	}
	x, err := parseStrict(buf.String())
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, buf.String())
	}
	return x
}

func want(t *testing.T, x *exposition, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := x.value(name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	if got != v {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, v)
	}
}

// TestWrite: the exposition parses strictly, with every value where it
// belongs, label values escaped (quotes, backslashes, line feeds, bytes
// that are not UTF-8).
func TestWrite(t *testing.T) {
	up := time.Unix(1700000000, 500e6)
	dbs := []replicate.DBStatus{
		{Name: "a/app.db", State: "following", ReplicatedTXID: 42, LastUpload: up, Lag: 1500 * time.Millisecond, Pinned: true, WALBytes: 4096},
		{Name: "b\"quoted\\back\nline", State: "broken", LastError: "boom", FailingSince: up, Lag: 3 * time.Second, WALBytes: 8192},
		{Name: "c\xffbad", State: "following", Degraded: true, LastError: "down"},
	}
	x := write(t, sampleMetrics(), dbs, Options{MaxDBs: 100})

	want(t, x, 5, "walsync_segments_uploaded_total")
	want(t, x, 2, "walsync_snapshots_uploaded_total")
	want(t, x, 12345, "walsync_uploaded_bytes_total")
	want(t, x, 7, "walsync_requests_total", "method", "PUT")
	want(t, x, 0, "walsync_requests_total", "method", "DELETE")
	want(t, x, 1, "walsync_upload_errors_total", "kind", "conflict")
	want(t, x, 6, "walsync_sync_errors_total")
	want(t, x, 3, "walsync_checkpoints_total")
	want(t, x, 2, "walsync_discontinuities_total", "reason", "db_replaced")
	want(t, x, 0, "walsync_discontinuities_total", "reason", "wal_restarted")
	want(t, x, 4, "walsync_spooled_segments_total")
	want(t, x, 1, "walsync_spool_overflows_total")
	want(t, x, 999, "walsync_spool_bytes")
	want(t, x, 3, "walsync_replication_lag_seconds_bucket", "le", "1")
	want(t, x, 5, "walsync_replication_lag_seconds_bucket", "le", "+Inf")
	want(t, x, 70.25, "walsync_replication_lag_seconds_sum")
	want(t, x, 5, "walsync_replication_lag_seconds_count")

	want(t, x, 3, "walsync_databases")
	want(t, x, 2, "walsync_databases_state", "state", "following")
	want(t, x, 1, "walsync_databases_state", "state", "broken")
	want(t, x, 0, "walsync_databases_state", "state", "gone")
	want(t, x, 2, "walsync_databases_pinned")
	want(t, x, 1, "walsync_databases_degraded")
	want(t, x, 2, "walsync_databases_failing")
	want(t, x, 3, "walsync_lag_max_seconds")
	want(t, x, 8192, "walsync_wal_max_bytes")

	want(t, x, 1.5, "walsync_db_lag_seconds", "db", "a/app.db")
	want(t, x, 42, "walsync_db_replicated_txid", "db", "a/app.db")
	want(t, x, 1700000000.5, "walsync_db_last_upload_timestamp_seconds", "db", "a/app.db")
	want(t, x, 1, "walsync_db_pinned", "db", "a/app.db")
	want(t, x, 3, "walsync_db_lag_seconds", "db", "b\"quoted\\back\nline")
	want(t, x, 1, "walsync_db_failing", "db", "b\"quoted\\back\nline")
	want(t, x, 1, "walsync_db_degraded", "db", "c\uFFFDbad")
	want(t, x, 0, "walsync_db_folded")
	if _, ok := x.value("walsync_db_lag_seconds"); ok {
		t.Fatal("a folded series with fewer databases than MaxDBs")
	}
	if _, ok := x.value("process_resident_memory_bytes"); !ok {
		t.Fatal("no process_resident_memory_bytes")
	}
}

// TestWriteBounded: with more databases than MaxDBs, the first MaxDBs in
// name order have series of their own and the others are folded into one
// series per metric, so the exposition's size does not grow with the
// number of databases.
func TestWriteBounded(t *testing.T) {
	const n, maxDBs = 10000, 100
	dbs := make([]replicate.DBStatus, n)
	for i := range dbs {
		dbs[i] = replicate.DBStatus{Name: fmt.Sprintf("tenant%05d/app.db", i), State: "following", Pinned: true,
			Lag: time.Duration(i%7) * time.Second, WALBytes: int64(i)}
	}
	dbs[n-1].Lag = 99 * time.Second // folded: shows only in the folded series
	dbs[500].Degraded = true
	var buf bytes.Buffer
	if err := Write(&buf, sampleMetrics(), dbs, Options{MaxDBs: maxDBs}); err != nil {
		t.Fatal(err)
	}
	x, err := parseStrict(buf.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"walsync_db_lag_seconds", "walsync_db_replicated_txid", "walsync_db_last_upload_timestamp_seconds",
		"walsync_db_wal_bytes", "walsync_db_pinned", "walsync_db_degraded", "walsync_db_failing"} {
		named := map[string]bool{}
		for _, l := range x.labels[name] {
			if db, ok := l["db"]; ok {
				named[db] = true
			}
		}
		if len(named) != maxDBs || !named["tenant00000/app.db"] || !named["tenant00099/app.db"] || named["tenant00100/app.db"] {
			t.Fatalf("%s: %d databases with series of their own, want the first %d", name, len(named), maxDBs)
		}
	}
	want(t, x, n-maxDBs, "walsync_db_folded")
	want(t, x, 99, "walsync_db_lag_seconds")
	want(t, x, n-1, "walsync_db_wal_bytes")
	want(t, x, n-maxDBs, "walsync_db_pinned")
	want(t, x, 1, "walsync_db_degraded")
	want(t, x, 0, "walsync_db_failing")
	want(t, x, 99, "walsync_lag_max_seconds")
	want(t, x, n, "walsync_databases")
	if got := len(x.series); got > 1000 {
		t.Fatalf("%d series for %d databases, want them bounded (< 1000)", got, n)
	}
	if buf.Len() > 100<<10 {
		t.Fatalf("exposition of %d bytes for %d databases, want it bounded (< 100 KiB)", buf.Len(), n)
	}

	x = write(t, sampleMetrics(), dbs, Options{MaxDBs: 0})
	for name, sets := range x.labels {
		for _, l := range sets {
			if _, ok := l["db"]; ok {
				t.Fatalf("%s has a db label with MaxDBs 0", name)
			}
		}
	}
	want(t, x, n, "walsync_db_folded")
}

// TestParseStrict: the checker the tests above rely on rejects what
// Prometheus rejects, and what walsync must not write.
func TestParseStrict(t *testing.T) {
	const ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n" +
		"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"
	if _, err := parseStrict(ok); err != nil {
		t.Fatalf("valid exposition rejected: %v", err)
	}
	for name, text := range map[string]string{
		"NoTrailingLF":     strings.TrimSuffix(ok, "\n"),
		"NoType":           "# HELP a A.\na 1\n",
		"NoHelp":           "# TYPE a gauge\na 1\n",
		"DuplicateSeries":  "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
		"FamilyReopened":   "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\n# HELP a A.\n",
		"SampleOutside":    "# HELP a A.\n# TYPE a gauge\nb 1\n",
		"BadEscape":        "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n",
		"RawQuote":         "# HELP a A.\n# TYPE a gauge\na{x=\"a\"b\"} 1\n",
		"BadLabelName":     "# HELP a A.\n# TYPE a gauge\na{1x=\"a\"} 1\n",
		"BadMetricName":    "# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n",
		"BadValue":         "# HELP a A.\n# TYPE a gauge\na one\n",
		"NegativeCounter":  "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",
		"NotCumulative":    "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n",
		"InfNotCount":      "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 3\n",
		"NoInf":            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 3\nh_count 2\n",
		"NotUTF8":          "# HELP a A.\n# TYPE a gauge\na{x=\"\xff\"} 1\n",
		"UnknownType":      "# HELP a A.\n# TYPE a summary2\na 1\n",
		"TwoSpaces":        "# HELP a A.\n# TYPE a gauge\na  1\n",
		"FamilyNoSample":   "# HELP a A.\n# TYPE a gauge\n",
		"ReservedLabel":    "# HELP a A.\n# TYPE a gauge\na{__x=\"a\"} 1\n",
		"TrailingComma":    "# HELP a A.\n# TYPE a gauge\na{x=\"a\",} 1\n",
		"BucketAfterCount": "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\nh_bucket{le=\"2\"} 1\n",
	} {
		if _, err := parseStrict(text); err == nil {
			t.Errorf("%s: accepted:\n%s", name, text)
		}
	}
}
