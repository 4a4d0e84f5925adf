package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

// TestBadInput: every case ends with a non-zero exit and a one-line error
// naming the problem, no panic, no secret, and no output file.
func TestBadInput(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "bad")
	dir := t.TempDir()

	notSQLite := filepath.Join(dir, "notes.db")
	os.WriteFile(notSQLite, []byte(strings.Repeat("not a database\n", 20)), 0o644)
	rollback := filepath.Join(dir, "rollback.db")
	sqlite(t, rollback, "CREATE TABLE t(x);\n")
	good := filepath.Join(dir, "good.db")
	createDB(t, good)
	sqlite(t, good, "INSERT INTO t(n, v) VALUES (1, randomblob(100));\n")
	mustRun(t, "snapshot", good, "-b", url, "--name", "good")
	existing := filepath.Join(dir, "existing.db")
	os.WriteFile(existing, []byte("keep me"), 0o600)
	out := filepath.Join(dir, "out.db")

	const secret = "thisIsTheWrongSecret0123456789"
	cases := []struct {
		name    string
		args    []string
		env     []string
		want    string // substring of the error line
		outFile string // must not exist afterwards ("" to skip)
	}{
		{"MissingDB", []string{"watch", filepath.Join(dir, "nope.db"), "-b", url}, nil, "does not exist", ""},
		{"Directory", []string{"watch", dir, "-b", url}, nil, "not a regular file", ""},
		{"NotSQLite", []string{"watch", notSQLite, "-b", url}, nil, "not an SQLite database", ""},
		{"NotWAL", []string{"watch", rollback, "-b", url}, nil, "journal_mode=WAL", ""},
		{"NoTarget", []string{"watch", good}, nil, "no target", ""},
		{"MalformedURL", []string{"list", "-b", "s3://"}, nil, "no bucket", ""},
		{"BadScheme", []string{"list", "-b", "ftp://host/x"}, nil, "unsupported scheme", ""},
		{"RelativeFileURL", []string{"list", "-b", "file://relative/dir"}, nil, "absolute path", ""},
		{"MissingBucket", []string{"list", "-b", s3URL(endpoint, "no-such-bucket-walsync", "x")}, nil, "no-such-bucket-walsync", ""},
		{"UnreachableEndpoint", []string{"list", "-b", s3URL("http://127.0.0.1:1", bucket, "x")}, nil, "127.0.0.1:1", ""},
		{"WrongCredentials", []string{"list", "-b", url}, []string{"AWS_SECRET_ACCESS_KEY=" + secret}, "denied", ""},
		{"BadTimestamp", []string{"restore", "good", "-b", url, "-o", out, "--timestamp", "yesterday"}, nil, "RFC 3339", out},
		{"TXIDOutOfRange", []string{"restore", "good", "-b", url, "-o", out, "--txid", "999999"}, nil, "out of range", out},
		{"TXIDAndTimestamp", []string{"restore", "good", "-b", url, "-o", out, "--txid", "1", "--timestamp", "2026-01-01T00:00:00Z"}, nil, "cannot be used together", out},
		{"UnknownDB", []string{"restore", "nope", "-b", url, "-o", out}, nil, "no backup found", out},
		{"ExistingOutput", []string{"restore", "good", "-b", url, "-o", existing}, nil, "--force", ""},
		{"OutputIsWatchedSource", []string{"restore", "good", "-b", url, "-o", good, "--force"}, nil, "in use", ""},
		{"MissingOutputDir", []string{"restore", "good", "-b", url, "-o", filepath.Join(dir, "no", "such", "out.db")}, nil, "output directory", ""},
		{"NegativeInterval", []string{"watch", good, "-b", url, "--sync-interval", "-1s"}, nil, "--sync-interval", ""},
		{"UnknownFlag", []string{"watch", good, "-b", url, "--frobnicate"}, nil, "unknown flag", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "OutputIsWatchedSource" {
				w := startWatch(t, filepath.Join(t.TempDir(), "watch.log"), "-b", s3URL(endpoint, bucket, "other"), good)
				defer w.stop()
				waitFor(t, func() bool { return run(t, "list", "-b", s3URL(endpoint, bucket, "other")).stdout != "" })
			}
			for _, kv := range c.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			r := run(t, c.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stdout: %s", r.stdout)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("stderr has %d lines, want 1:\n%s", len(lines), r.stderr)
			}
			if !strings.Contains(lines[0], c.want) {
				t.Errorf("error %q does not mention %q", lines[0], c.want)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("panic: %s", r.stderr)
			}
			if strings.Contains(r.stderr, secret) || strings.Contains(r.stdout, secret) {
				t.Errorf("output contains the secret")
			}
			if c.outFile != "" {
				if _, err := os.Stat(c.outFile); err == nil {
					t.Errorf("%s was created", c.outFile)
				}
			}
			if b, _ := os.ReadFile(existing); string(b) != "keep me" {
				t.Errorf("%s was modified", existing)
			}
			if fi, err := os.Stat(good); err != nil || fi.Size() == 0 {
				t.Errorf("source %s damaged", good)
			}
			leftovers, _ := filepath.Glob(filepath.Join(dir, ".*walsync-restore*"))
			if len(leftovers) > 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}
		})
	}
}

// TestCorruptSegment: a segment damaged in the bucket makes restore fail
// with an error naming the object, and leaves no output.
func TestCorruptSegment(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "corrupt")
	db := filepath.Join(t.TempDir(), "c.db")
	createDB(t, db)
	w := startWatch(t, filepath.Join(t.TempDir(), "watch.log"), "-b", url, "--name", "c", "--sync-interval", "0", db)
	writeLoad(t, db, 0, 20, 3)
	w.stop()

	key := "corrupt/c/0000/0000000000000002-0000000000000002.ltx"
	path := testenv.ObjectPath(t, bucket, key)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("segment not stored where expected: %v", err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	r := run(t, "restore", "c", "-b", url, "-o", out)
	if r.code == 0 {
		t.Fatal("restore of a corrupted backup succeeded")
	}
	if !strings.Contains(r.stderr, "0000000000000002-0000000000000002.ltx") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("error does not name the object on one line: %q", r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written despite the corruption")
	}
}

// TestMissingDirTarget: the read-only commands (list, restore) never create
// a file:// target; a missing directory is a one-line error naming it and a
// non-zero exit. The commands that write (snapshot, like watch) create it.
func TestMissingDirTarget(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo", "backups")
	out := filepath.Join(dir, "out.db")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"List", []string{"list", "-b", "file://" + typo}},
		{"Restore", []string{"restore", "app", "-b", "file://" + typo, "-o", out}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stdout: %q", r.stdout)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if got, want := len(lines), 1; got != want {
				t.Fatalf("stderr has %d lines, want %d:\n%s", got, want, r.stderr)
			}
			if !strings.Contains(lines[0], typo) {
				t.Fatalf("error %q does not name %s", lines[0], typo)
			}
			for _, p := range []string{filepath.Join(dir, "typo"), out} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s was created", p)
				}
			}
		})
	}
	t.Run("SnapshotCreates", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "app.db")
		createDB(t, db)
		target := filepath.Join(dir, "new", "backups")
		mustRun(t, "snapshot", db, "-b", "file://"+target, "--name", "app")
		if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
			t.Fatalf("snapshot did not create %s: %v", target, err)
		}
		if got := mustRun(t, "list", "-b", "file://"+target); !strings.Contains(got, "app") {
			t.Fatalf("list after snapshot=%q, want the database app", got)
		}
	})
}
