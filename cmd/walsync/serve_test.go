package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
)

// TestMetricsHealthStatusWatch: a watch started with --metrics-addr on
// port 0 logs the address it bound; /metrics counts the segment uploaded
// after a write; /healthz answers; /readyz answers 200 while the target
// takes uploads, 503 naming the database while it is down, and 200 again
// once it is back; `walsync status` prints the database with stable JSON
// keys.
func TestMetricsHealthStatusWatch(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	p := faultproxy.New(t, endpoint)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	logPath := filepath.Join(dir, "watch.log")
	w := startWatch(t, logPath, "-b", s3URL(p.URL(), bucket, "metrics"), "--name", "app",
		"--sync-interval", "100ms", "--metrics-addr", "127.0.0.1:0", "--ready-lag", "3s", db)
	addr := servedAddr(t, logPath)

	if code, body := httpGet(t, addr, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q, want 200 ok", code, body)
	}
	// The first snapshot first, so that the row goes into a segment.
	waitFor(t, func() bool { return sampleValue(scrape(t, addr), "walsync_snapshots_uploaded_total") >= 1 })
	sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, randomblob(100));\n")
	var text string
	waitFor(t, func() bool {
		text = scrape(t, addr)
		return sampleValue(text, "walsync_segments_uploaded_total") > 0
	})
	for series, least := range map[string]float64{
		"walsync_databases":                     1,
		"walsync_snapshots_uploaded_total":      1,
		`walsync_requests_total{method="PUT"}`:  2, // the first snapshot, a segment
		`walsync_db_replicated_txid{db="app"}`:  2,
		`walsync_db_pinned{db="app"}`:           1,
		`walsync_replication_lag_seconds_count`: 2,
	} {
		if got := sampleValue(text, series); got < least {
			t.Errorf("%s = %v, want at least %v\n%s", series, got, least, text)
		}
	}
	waitFor(t, func() bool { code, _ := httpGet(t, addr, "/readyz"); return code == 200 })

	// The sqlite3 CLI closed the database: walsync emptied its WAL (closed).
	st := status(t, addr)
	if st["name"] != "app" || (st["state"] != "closed" && st["state"] != "following") || st["pinned"] != true || st["degraded"] != false ||
		st["replicated_txid"].(float64) < 2 || st["last_upload"] == nil || st["last_error"] != "" {
		t.Fatalf("status --json: %v, want app closed or following, pinned, replicated, no error", st)
	}
	table := mustRun(t, "status", "--addr", addr)
	if !strings.Contains(table, "NAME") || countLines(table, "app") != 1 || !strings.Contains(table, st["state"].(string)) {
		t.Fatalf("status table:\n%s", table)
	}

	p.SetDown(true)
	sqlite(t, db, "INSERT INTO t(n, v) VALUES (2, randomblob(100));\n")
	waitFor(t, func() bool { return status(t, addr)["degraded"] == true })
	if st := status(t, addr); st["last_error"] == "" || st["failing_since"] == nil || st["lag_seconds"].(float64) <= 0 {
		t.Fatalf("status --json while the target is down: %v, want an error, a failure time, a lag", st)
	}
	code, body := httpGet(t, addr, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: 1 of 1 databases") ||
		!strings.Contains(body, "app: the target does not take its uploads") {
		t.Fatalf("/readyz while the target is down: %d %q, want 503 naming app", code, body)
	}
	if got := sampleValue(scrape(t, addr), "walsync_databases_degraded"); got != 1 {
		t.Fatalf("walsync_databases_degraded = %v while the target is down, want 1", got)
	}

	p.SetDown(false)
	waitFor(t, func() bool { code, _ := httpGet(t, addr, "/readyz"); return code == 200 })
	w.stop()
	if r := run(t, "status", "--addr", addr); r.code == 0 || !strings.Contains(r.stderr, "no walsync watch answers") {
		t.Fatalf("status with no watch running: exit %d: %s", r.code, r.stderr)
	}
}

// TestHealthHeartbeat: --heartbeat-url is pinged while every database is
// ready, without --metrics-addr; failed pings are logged without the URL's
// secret; the pings stop while the target is down and resume after.
func TestHealthHeartbeat(t *testing.T) {
	var ok, failed atomic.Int64
	var answer atomic.Int64
	answer.Store(http.StatusInternalServerError)
	hb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/ping/SECRET-TOKEN" {
			t.Errorf("heartbeat %s %s", r.Method, r.URL.Path)
		}
		code := int(answer.Load())
		if code == http.StatusOK {
			ok.Add(1)
		} else {
			failed.Add(1)
		}
		w.WriteHeader(code)
	}))
	defer hb.Close()

	endpoint, bucket := testenv.S3(t)
	p := faultproxy.New(t, endpoint)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	logPath := filepath.Join(dir, "watch.log")
	w := startWatch(t, logPath, "-b", s3URL(p.URL(), bucket, "heartbeat"), "--name", "app", "--sync-interval", "100ms",
		"--heartbeat-url", hb.URL+"/ping/SECRET-TOKEN?key=SECRET-QUERY", "--heartbeat-interval", "100ms", "--ready-lag", "3s", db)

	waitFor(t, func() bool { return failed.Load() >= 2 })
	waitFor(t, func() bool { return strings.Contains(tail(logPath), `"msg":"heartbeat failed"`) })
	answer.Store(http.StatusOK)
	waitFor(t, func() bool { return ok.Load() >= 3 })

	p.SetDown(true)
	sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, randomblob(100));\n")
	waitFor(t, func() bool { return strings.Contains(tail(logPath), `"msg":"heartbeat paused`) })
	before := ok.Load()
	time.Sleep(time.Second) // ten intervals: no ping may come
	if got := ok.Load(); got > before+1 {
		t.Fatalf("%d pings while the target was down, want none", got-before)
	}

	p.SetDown(false)
	waitFor(t, func() bool { return ok.Load() >= before+3 })
	w.stop()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	logText := string(b)
	if strings.Contains(logText, "SECRET") {
		t.Fatalf("the heartbeat URL's secret is in the log:\n%s", logText)
	}
	if !strings.Contains(logText, `"msg":"heartbeat resumed`) {
		t.Fatalf("no heartbeat resumed record:\n%s", logText)
	}
}

// TestReadyNotReady: what keeps the process from being ready, and the
// report naming the first few databases.
func TestReadyNotReady(t *testing.T) {
	now := time.Now()
	bound := time.Minute
	dbs := []replicate.DBStatus{
		{Name: "fine"},
		{Name: "lagging", Lag: 2 * time.Minute},
		{Name: "at-bound", Lag: time.Minute},
		{Name: "down", Degraded: true, LastError: "connection reset", FailingSince: now},
		{Name: "failing-long", LastError: "snapshot: EIO", FailingSince: now.Add(-2 * time.Minute)},
		{Name: "failing-new", LastError: "snapshot: EIO", FailingSince: now.Add(-time.Second)},
	}
	bad := notReady(dbs, bound, now)
	var names []string
	for _, b := range bad {
		names = append(names, strings.SplitN(b, ":", 2)[0])
	}
	if got, want := strings.Join(names, ","), "lagging,down,failing-long"; got != want {
		t.Fatalf("not ready: %s, want %s (%q)", got, want, bad)
	}
	if len(notReady(dbs[:1], bound, now)) != 0 {
		t.Fatal("a database with no lag and no error is not ready")
	}
	var many []string
	for i := range 7 {
		many = append(many, fmt.Sprintf("db%d: lag 2m", i))
	}
	rep := readyReport(many, 10)
	if lines := strings.Split(rep, "\n"); len(lines) != 7 || lines[0] != "not ready: 7 of 10 databases" || lines[6] != "and 2 more" {
		t.Fatalf("report:\n%s", rep)
	}
}

// TestHealthHeartbeatURLNeverShown: the heartbeat URL is shown as its
// scheme and host only, and a bad one is refused without repeating it.
func TestHealthHeartbeatURLNeverShown(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hc-ping.com/0b5e-SECRET":         "https://hc-ping.com/REDACTED",
		"https://h.example/?token=SECRET":         "https://h.example/REDACTED",
		"https://user:SECRET@h.example":           "https://h.example",
		"http://h.example:8080":                   "http://h.example:8080",
		"https://h.example/p#SECRET":              "https://h.example/REDACTED",
		"%zz://SECRET":                            "REDACTED",
		"https://h.example/%zzSECRET":             "REDACTED",
		"mailto:SECRET@h.example":                 "REDACTED",
		"https://[::1]:9/SECRET/ping?x=SECRET#af": "https://[::1]:9/REDACTED",
	} {
		if got := heartbeatLabel(raw); got != want {
			t.Errorf("heartbeatLabel(%q) = %q, want %q", raw, got, want)
		}
	}
	for _, raw := range []string{"ftp://SECRET@h/x", "SECRET", "https:///SECRET", "%zz://SECRET"} {
		o := serveOptions{readyLag: time.Minute, heartbeatInterval: time.Minute, heartbeatURL: raw}
		err := o.validate()
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("validate(%q) = %v, want an error without the URL", raw, err)
		}
	}
}

// TestStatusJSONKeys: the keys of `walsync status --json` are stable.
func TestStatusJSONKeys(t *testing.T) {
	b, err := json.Marshal(newStatusJSON(replicate.DBStatus{Name: "a", LastUpload: time.Now()}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if got, want := strings.Join(keys, " "), "degraded failing_since lag_seconds last_error last_upload name path pinned replicated_txid state wal_bytes"; got != want {
		t.Fatalf("keys %s, want %s", got, want)
	}
}

// servedAddr returns the address a watch logged with "serving metrics".
func servedAddr(t *testing.T, logPath string) string {
	t.Helper()
	for _, rec := range logLines(t, logPath) {
		if rec["msg"] == "serving metrics" {
			if a, ok := rec["addr"].(string); ok && a != "" {
				return a
			}
		}
	}
	t.Fatalf("no serving metrics record with an address:\n%s", tail(logPath))
	return ""
}

func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns the text of /metrics, checking its content type.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("/metrics: %s, Content-Type %q", resp.Status, ct)
	}
	return string(b)
}

// sampleValue returns the value of the sample named series (with its
// labels as written) in an exposition, or -1.
func sampleValue(text, series string) float64 {
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// status runs `walsync status --json` and returns its only database.
func status(t *testing.T, addr string) map[string]any {
	t.Helper()
	out := mustRun(t, "status", "--addr", addr, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("status --json: %d lines, want 1:\n%s", len(lines), out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("status --json: %v:\n%s", err, out)
	}
	return m
}

// TestConfigFileMetrics: a watch started from a config file alone (target,
// database, metrics address all in the file) serves /metrics counting the
// segment uploaded after a write, and /readyz answers 200.
func TestConfigFileMetrics(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	cfg := filepath.Join(dir, "walsync.yml")
	text := fmt.Sprintf("target: %s\nsync-interval: 100ms\nmetrics-addr: 127.0.0.1:0\ndatabases:\n  - path: %s\n    name: app\n", s3URL(endpoint, bucket, "cfgmetrics"), db)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "watch.log")
	startWatch(t, logPath, "-c", cfg)
	addr := servedAddr(t, logPath)
	sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, randomblob(100));\n")
	// The row is in the target (in the first snapshot or a segment after
	// it, as timing decides), and the metrics say so.
	target := s3URL(endpoint, bucket, "cfgmetrics")
	waitLive(t, target, "app", "SELECT count(*) FROM t;", "1\n", time.Minute)
	waitFor(t, func() bool {
		text := scrape(t, addr)
		return sampleValue(text, `walsync_db_replicated_txid{db="app"}`) >= 1 && sampleValue(text, "walsync_databases") == 1
	})
	waitFor(t, func() bool { code, _ := httpGet(t, addr, "/readyz"); return code == 200 })
}
