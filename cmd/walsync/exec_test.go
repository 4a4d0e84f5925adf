package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// TestExecArgs: the application's command line comes from --exec, split
// into words as a shell would but with no shell feature, or from the
// arguments after "--", never both.
func TestExecArgs(t *testing.T) {
	for _, c := range []struct {
		name     string
		exec     string
		args     []string
		dash     int // cobra's ArgsLenAtDash: -1 without "--"
		wantDBs  []string
		wantArgv []string
		wantErr  string
	}{
		{"OK/Exec", `app --name 'a b' "c d" e\ f`, []string{"x.db"}, -1, []string{"x.db"}, []string{"app", "--name", "a b", "c d", "e f"}, ""},
		{"OK/ExecNoExpansion", `app $HOME ~ *.db`, nil, -1, nil, []string{"app", "$HOME", "~", "*.db"}, ""},
		{"OK/Dash", "", []string{"x.db", "app", "-v", "a b"}, 1, []string{"x.db"}, []string{"app", "-v", "a b"}, ""},
		{"OK/DashNoDB", "", []string{"app"}, 0, []string{}, []string{"app"}, ""},
		{"OK/None", "", []string{"x.db"}, -1, []string{"x.db"}, nil, ""},
		{"ErrSemicolon", "app; rm -rf /", nil, -1, nil, nil, "shell operator"},
		{"ErrPipe", "app | tee log", nil, -1, nil, nil, "shell operator"},
		{"ErrRedirect", "app > log", nil, -1, nil, nil, "shell operator"},
		{"ErrQuote", `app "unterminated`, nil, -1, nil, nil, "unbalanced"},
		{"ErrEmpty", "   ", nil, -1, nil, nil, "no command"},
		{"ErrBoth", "app", []string{"x.db", "other"}, 1, nil, nil, "not both"},
		{"ErrDashNothing", "", []string{"x.db"}, 1, nil, nil, "no command after --"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := &watchOptions{exec: c.exec}
			dbs, err := o.takeExecArgs(c.args, c.dash)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err=%v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := dbs, c.wantDBs; !slices.Equal(got, want) {
				t.Errorf("databases=%q, want %q", got, want)
			}
			if got, want := o.execArgv, c.wantArgv; !slices.Equal(got, want) {
				t.Errorf("argv=%q, want %q", got, want)
			}
		})
	}
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeScript writes a shell script into dir and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// insertSQL returns a sqlite3 command line, for a script, that inserts a
// row with n into the test table of db.
func insertSQL(sqlite3, db string, n int) string {
	return fmt.Sprintf("%s -bail %s 'PRAGMA busy_timeout=10000; INSERT INTO t(n, v) VALUES (%d, randomblob(3000));' >/dev/null",
		shq(sqlite3), shq(db), n)
}

// restoredNs restores name from url and returns its rows' n, in order.
func restoredNs(t *testing.T, url, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	mustRun(t, "restore", name, "-b", url, "-o", out)
	return strings.Join(strings.Fields(sqlite(t, out, "SELECT n FROM t ORDER BY n;\n")), ",")
}

// TestExecExitStatus: `watch --exec` runs a real application (a shell
// script writing with the sqlite3 CLI) that exits with status 3: walsync
// passes its output through, exits 3 too, and what it committed is in the
// target. The sync interval is an hour, so the rows get there only by the
// upload that follows the application's exit.
func TestExecExitStatus(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "exec-status")
	sqlite3 := testenv.SQLite3(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	script := writeScript(t, dir, "app dir.sh", // a space, quoted in --exec
		insertSQL(sqlite3, db, 1)+"\n"+insertSQL(sqlite3, db, 2)+"\necho application output\nexit 3\n")

	r := runEnv(t, dir, nil, "watch", db, "-b", url, "--sync-interval", "1h", "--log-format", "json",
		"--exec", "sh "+shq(script))
	if got, want := r.code, 3; got != want {
		t.Fatalf("exit %d, want %d (the application's); stderr:\n%s", got, want, r.stderr)
	}
	if !strings.Contains(r.stdout, "application output") {
		t.Errorf("stdout %q does not hold the application's output", r.stdout)
	}
	if !strings.Contains(r.stderr, `"msg":"exec: the application exited; uploading what is committed"`) {
		t.Errorf("no exit record in the log:\n%s", r.stderr)
	}
	if got, want := restoredNs(t, url, db), "1,2"; got != want {
		t.Fatalf("restored rows n=%s, want %s", got, want)
	}
}

// TestExecSignals: signals sent to walsync reach the application, which
// decides when to stop; walsync then uploads what is committed and exits
// with the application's status (128+N if signal N killed it).
func TestExecSignals(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	sqlite3 := testenv.SQLite3(t)
	for _, c := range []struct {
		name     string
		signal   syscall.Signal
		script   func(db, ready string) string
		wantCode int
		wantRows string
	}{
		{
			// The application traps SIGTERM, writes a last row and exits 0.
			name:   "TERMTrapped",
			signal: syscall.SIGTERM,
			script: func(db, ready string) string {
				return "trap '" + strings.ReplaceAll(insertSQL(sqlite3, db, 42), "'", `'\''`) + " && exit 0; exit 9' TERM\n" +
					": > " + shq(ready) + "\nwhile :; do sleep 0.05; done\n"
			},
			wantCode: 0,
			wantRows: "42",
		},
		{
			// SIGUSR1 does not stop walsync (its default action would):
			// it is passed on, and the application exits 5 on it.
			name:   "USR1Passed",
			signal: syscall.SIGUSR1,
			script: func(db, ready string) string {
				return "trap '" + strings.ReplaceAll(insertSQL(sqlite3, db, 43), "'", `'\''`) + " && exit 5; exit 9' USR1\n" +
					": > " + shq(ready) + "\nwhile :; do sleep 0.05; done\n"
			},
			wantCode: 5,
			wantRows: "43",
		},
		{
			// The application does not handle SIGTERM: the signal kills it,
			// and walsync exits 128+15 after uploading its earlier row.
			name:   "TERMKills",
			signal: syscall.SIGTERM,
			script: func(db, ready string) string {
				return insertSQL(sqlite3, db, 44) + "\n: > " + shq(ready) + "\nexec sleep 600\n"
			},
			wantCode: 128 + int(syscall.SIGTERM),
			wantRows: "44",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			url := s3URL(endpoint, bucket, "exec-"+c.name)
			dir := t.TempDir()
			db := filepath.Join(dir, "app.db")
			createDB(t, db)
			ready := filepath.Join(dir, "ready")
			script := writeScript(t, dir, "app.sh", c.script(db, ready))
			logPath := filepath.Join(dir, "watch.log")
			// The command after "--", the form for a container's CMD.
			w := startWatch(t, logPath, db, "-b", url, "--sync-interval", "1h", "--", "sh", script)
			waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil })
			w.cmd.Process.Signal(c.signal)
			var err error
			select {
			case err = <-w.done:
			case <-time.After(time.Minute):
				t.Fatalf("walsync still running a minute after %v; log:\n%s", c.signal, tail(logPath))
			}
			code := 0
			if err != nil {
				code = w.cmd.ProcessState.ExitCode()
			}
			if code != c.wantCode {
				t.Fatalf("exit %d (%v), want %d; log:\n%s", code, err, c.wantCode, tail(logPath))
			}
			passed := false
			for _, rec := range logLines(t, logPath) {
				passed = passed || rec["msg"] == "exec: passed on signal" && rec["signal"] == c.signal.String()
			}
			if !passed {
				t.Errorf("no record of %v passed on; log:\n%s", c.signal, tail(logPath))
			}
			if got := restoredNs(t, url, db); got != c.wantRows {
				t.Fatalf("restored rows n=%s, want %s", got, c.wantRows)
			}
		})
	}
}

// TestExecStartFails: a command that cannot start ends walsync at once
// with a shell's status (127 not found, 126 not executable) and one line.
func TestExecStartFails(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	noExec := filepath.Join(dir, "data.txt")
	os.WriteFile(noExec, []byte("not a program\n"), 0o644)
	target := "file://" + filepath.Join(dir, "target")
	for _, c := range []struct {
		name     string
		command  string
		wantCode int
	}{
		{"NotFound", filepath.Join(dir, "no-such-program"), exitNotFound},
		{"NotInPath", "walsync-no-such-program", exitNotFound},
		{"NotExecutable", noExec, exitCannotExecute},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runEnv(t, dir, nil, "watch", db, "-b", target, "--", c.command)
			if r.code != c.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, c.wantCode, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "walsync: watch --exec:") {
				t.Fatalf("last stderr line %q, want the start error", last)
			}
		})
	}
}
