package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// binPath is the walsync binary built (with -race) by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "walsync-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "walsync")
	args := []string{"build", "-race", "-o", binPath, "."}
	if os.Getenv("WALSYNC_E2E_RACE") == "0" { // for measurements (RSS) of the real binary
		args = slices.Delete(args, 1, 2)
	}
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build walsync:", err)
		os.Exit(1)
	}
	code := testenv.Run(m)
	os.RemoveAll(dir) // testenv.Main would exit before a deferred call
	os.Exit(code)
}

// result is the outcome of one walsync invocation.
type result struct {
	stdout, stderr string
	code           int
}

// run runs walsync to completion.
func run(t testing.TB, args ...string) result {
	t.Helper()
	return runWith(t, binPath, args...)
}

// runWith runs the walsync binary bin to completion.
func runWith(t testing.TB, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run walsync %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// mustRun runs walsync and fails the test on a non-zero exit.
func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := run(t, args...)
	if r.code != 0 {
		t.Fatalf("walsync %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// watcher is a running `walsync watch` process with JSON logs in a file.
type watcher struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startWatch(t testing.TB, logPath string, args ...string) *watcher {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ready := readyCount(logPath)
	cmd := exec.Command(binPath, append([]string{"watch", "--log-format", "json"}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w := &watcher{t: t, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	// Ready once it logged that it is watching (signals are handled from then on).
	waitFor(t, func() bool {
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("walsync watch exited at start: %v; log:\n%s", err, tail(logPath))
		default:
		}
		return readyCount(logPath) > ready
	})
	return w
}

// readyCount counts the "watching" records in a log file.
func readyCount(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), `"msg":"watching"`)
}

// stop sends SIGTERM and requires a clean exit.
func (w *watcher) stop() {
	w.t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		if err != nil {
			w.t.Fatalf("walsync watch exited with %v; log:\n%s", err, tail(w.log))
		}
	case <-time.After(2 * time.Minute):
		w.cmd.Process.Kill()
		w.t.Fatalf("walsync watch did not exit after SIGTERM; log:\n%s", tail(w.log))
	}
}

// kill9 kills walsync without letting it flush.
func (w *watcher) kill9() {
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
}

// logLines returns the JSON log records of the watcher's log file.
func logLines(t testing.TB, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range strings.SplitSeq(string(b), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// sqliteProc is a long-running sqlite3 CLI process fed through its stdin:
// a real external writer.
type sqliteProc struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
	mu    sync.Mutex
}

func startSQLite(t testing.TB, db string) *sqliteProc {
	t.Helper()
	p := &sqliteProc{t: t}
	p.cmd = exec.Command(testenv.SQLite3(t), "-bail", db)
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = &lockedWriter{w: &p.out, mu: &p.mu}
	p.cmd.Stderr = &lockedWriter{w: &p.out, mu: &p.mu}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// exec sends SQL to the process. Safe to call from any goroutine: errors
// are returned, not reported with t.Fatal.
func (p *sqliteProc) exec(sql string) error {
	if _, err := io.WriteString(p.stdin, sql); err != nil {
		return fmt.Errorf("sqlite3 stdin: %v; output: %s", err, p.output())
	}
	return nil
}

// close ends the script and waits for the process, which must succeed.
func (p *sqliteProc) close() error {
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("sqlite3: %v; output: %s", err, p.output())
	}
	return nil
}

func (p *sqliteProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// sqlite runs a short sqlite3 script on db and returns its output.
func sqlite(t testing.TB, db, script string) string {
	t.Helper()
	cmd := exec.Command(testenv.SQLite3(t), "-bail", db)
	// A busy timeout, as an application has: walsync may hold a read lock
	// for a moment (a snapshot of a database it just found).
	cmd.Stdin = strings.NewReader(".timeout 10000\n" + script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", db, err, errb.String())
	}
	return out.String()
}

// dump returns the .dump of db.
func dump(t testing.TB, db string) string { return sqlite(t, db, ".dump\n") }

// createDB creates a WAL-mode database with the test table.
func createDB(t testing.TB, db string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
		t.Fatal(err)
	}
	sqlite(t, db, "PRAGMA journal_mode=WAL;\nCREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB);\nCREATE INDEX t_n ON t(n);\n")
}

// s3URL returns the target URL of a bucket prefix on the test server.
func s3URL(endpoint, bucket, prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&path-style=true", bucket, prefix, endpoint, testenv.Region)
}

// countLines returns the number of lines of s containing sub.
func countLines(s, sub string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test after a minute. It is
// for events another process reports only through its side effects.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for delay := 10 * time.Millisecond; !cond(); delay = min(2*delay, time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(delay)
	}
}
