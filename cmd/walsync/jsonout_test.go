package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/bench"
)

// snakeCase is the form of every key of walsync's JSON outputs.
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// jsonDoc returns docs/json.md, which documents every key.
func jsonDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "json.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// decodeLine decodes one JSON object and checks its keys are exactly want,
// each snake_case and documented in doc.
func decodeLine(t *testing.T, line string, want []string, doc string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	for _, k := range keys {
		if !snakeCase.MatchString(k) {
			t.Errorf("key %q is not snake_case", k)
		}
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("key %q is not in docs/json.md", k)
		}
	}
	return m
}

// TestJSONOutputs: `list --json` and `restore --json` print one object per
// line with the documented snake_case keys; TXIDs are numbers, times RFC
// 3339 in UTC.
func TestJSONOutputs(t *testing.T) {
	doc := jsonDoc(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, randomblob(10));\n")
	target := "file://" + filepath.Join(dir, "target")
	mustRun(t, "snapshot", db, "-b", target, "--name", "j/app.db")

	out := strings.Split(strings.TrimSpace(mustRun(t, "list", "--json", "-b", target)), "\n")
	if len(out) != 1 {
		t.Fatalf("list --json printed %d lines, want 1:\n%s", len(out), strings.Join(out, "\n"))
	}
	l := decodeLine(t, out[0], []string{"name", "first_txid", "first_time", "last_txid", "last_time", "snapshots", "segments", "bytes"}, doc)
	if got, want := l["name"], "j/app.db"; got != want {
		t.Errorf("name=%v, want %v", got, want)
	}
	txid, ok := l["last_txid"].(float64)
	if !ok || txid < 1 || l["first_txid"] != l["last_txid"] {
		t.Errorf("first_txid=%v last_txid=%v, want one number ≥ 1 (one snapshot)", l["first_txid"], l["last_txid"])
	}
	for _, k := range []string{"first_time", "last_time"} {
		s, _ := l[k].(string)
		if ts, err := time.Parse(time.RFC3339Nano, s); err != nil || ts.Location() != time.UTC {
			t.Errorf("%s=%v, want an RFC 3339 UTC time (%v)", k, l[k], err)
		}
	}
	if l["snapshots"] != 1.0 || l["segments"] != 0.0 || l["bytes"].(float64) <= 0 {
		t.Errorf("snapshots=%v segments=%v bytes=%v, want 1, 0, > 0", l["snapshots"], l["segments"], l["bytes"])
	}

	restored := filepath.Join(dir, "restored.db")
	out = strings.Split(strings.TrimSpace(mustRun(t, "restore", "j/app.db", "-b", target, "-o", restored, "--json")), "\n")
	if len(out) != 1 {
		t.Fatalf("restore --json printed %d lines, want 1:\n%s", len(out), strings.Join(out, "\n"))
	}
	r := decodeLine(t, out[0], []string{"name", "output", "status", "reason", "txid", "timestamp", "files", "pages", "page_size", "bytes", "requests", "duration_ms"}, doc)
	if r["name"] != "j/app.db" || r["output"] != restored || r["status"] != "restored" || r["reason"] != "" || r["txid"] != txid || r["page_size"] != 4096.0 || r["files"] != 1.0 {
		t.Errorf("restore --json = %v, want name j/app.db, output %s, txid %v, page_size 4096, files 1", r, restored, txid)
	}

	all := strings.Split(strings.TrimSpace(mustRun(t, "restore", "--all", "-b", target, "-o", filepath.Join(dir, "all"), "--json")), "\n")
	if len(all) != 2 {
		t.Fatalf("restore --all --json printed %d lines, want 2:\n%s", len(all), strings.Join(all, "\n"))
	}
	decodeLine(t, all[0], []string{"name", "output", "status", "reason", "txid", "timestamp", "files", "pages", "page_size", "bytes", "requests", "duration_ms"}, doc)
	sum := decodeLine(t, all[1], []string{"summary", "databases", "restored", "skipped", "failed", "bytes", "requests", "duration_ms"}, doc)
	if sum["summary"] != true || sum["databases"] != 1.0 || sum["restored"] != 1.0 {
		t.Errorf("restore --all --json summary %v, want 1 database restored", sum)
	}
}

// TestBenchJSON: every key of `bench --json` rows is snake_case and
// documented, a row survives encoding and decoding, and `bench
// --from-json` still reads rows saved before the lag columns existed.
func TestBenchJSON(t *testing.T) {
	doc := jsonDoc(t)
	rt := reflect.TypeFor[bench.Row]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !snakeCase.MatchString(name) {
			t.Errorf("bench.Row.%s: JSON key %q is not snake_case", f.Name, name)
		}
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("bench.Row.%s: JSON key %q is not in docs/json.md", f.Name, name)
		}
	}

	row := bench.Row{Tool: "walsync", Mode: "one-process", DBs: 20, ActiveDBs: 20, Procs: 1, RSSAvgKB: 11800,
		RSSPeakKB: 12000, CPUPerMin: 1.05, RequestsMin: 1200, RequestUnit: "requests",
		RequestsByType: map[string]float64{"PUT": 1200}, WindowS: 60, Rate: 10, Commits: 12000, RestoredOK: true,
		LagCommits: 12000, LagP50MS: 502, LagP99MS: 1003, LagMaxMS: 1107, LagClock: "proxy"}
	b, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Row
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, row) {
		t.Fatalf("round trip: %+v, %v; want %+v", back, err, row)
	}

	// A row as saved before the rate and lag columns, and a current one.
	old := `{"tool":"walsync","mode":"one-process","dbs":5,"active_dbs":5,"procs":1,"rss_avg_kb":11540,"rss_peak_kb":12000,"pss_kb":6800,"rss_anon_kb":5000,"threads":7,"fds":20,"cpu_s_per_min":0.37,"requests_per_min":300,"request_unit":"requests","window_s":60,"commits":3000,"restored_ok":true}`
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	if err := os.WriteFile(path, []byte(old+"\n"+string(b)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	g := &globals{stdout: &stdout, stderr: &stdout}
	if err := replayBench(g, &benchOptions{fromJSON: []string{path}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want a header and 2 rows:\n%s", len(lines), stdout.String())
	}
	if f := strings.Fields(lines[1]); f[0] != "5" || f[1] != "-" || f[len(f)-1] != "-" {
		t.Errorf("old row %q: want N 5, rate and lag shown as -", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "20" || f[1] != "10" || !slices.Contains(f, "1107") {
		t.Errorf("new row %q: want N 20, rate 10, lag max 1107", lines[2])
	}
}
