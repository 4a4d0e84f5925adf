package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
)

// snapshotKey is the key of a database's first snapshot at TXID 1.
func snapshotKey(name string) string {
	return name + "/0009/0000000000000001-0000000000000001.ltx"
}

// putObject stores b under key in the target url, as a raw object. It
// reports whether the target took the key (some refuse hostile ones).
func putObject(t *testing.T, url, key string, b []byte) bool {
	t.Helper()
	store, err := openStorage(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(context.Background(), key, bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Logf("the target refuses key %q: %v", key, err)
		return false
	}
	return true
}

// getObject returns the object key of the target url.
func getObject(t *testing.T, url, key string) []byte {
	t.Helper()
	store, err := openExistingStorage(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := store.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeRestoreAll splits `restore --all --json` output into the objects
// of the databases, by name, and the summary.
func decodeRestoreAll(t *testing.T, out string) (map[string]restoreJSON, restoreAllJSON) {
	t.Helper()
	dbs := make(map[string]restoreJSON)
	var sum restoreAllJSON
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, line := range lines {
		if i == len(lines)-1 {
			if err := json.Unmarshal([]byte(line), &sum); err != nil || !sum.Summary {
				t.Fatalf("last line %q is not the summary (%v)", line, err)
			}
			break
		}
		var r restoreJSON
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		dbs[r.Name] = r
	}
	return dbs, sum
}

// statuses returns name -> status of the databases of a --json output.
func statuses(dbs map[string]restoreJSON) map[string]string {
	m := make(map[string]string)
	for n, r := range dbs {
		m[n] = r.Status
	}
	return m
}

// TestRestoreAll: --all against versitygw restores each selected database
// into a tree mirroring the names, equal to its source, at one
// --timestamp; hostile names in the bucket fail alone, by name, and nothing
// is written outside the output directory; existing outputs are refused
// or, with --if-db-not-exists, skipped.
func TestRestoreAll(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "all")
	src := t.TempDir()
	dbs := map[string]string{} // name -> source
	for _, name := range []string{"tenant1/app.db", "tenant2/app.db", "other/x.db", "col/inner.db"} {
		db := filepath.Join(src, strings.ReplaceAll(name, "/", "_"))
		createDB(t, db)
		sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, '"+name+"');\n")
		mustRun(t, "snapshot", db, "-b", url, "--name", name)
		dbs[name] = db
	}
	// T: the state of the first databases; tenant1 changes after it and
	// tenant3 is created after it.
	dumpsAtT := map[string]string{"tenant1/app.db": dump(t, dbs["tenant1/app.db"]), "tenant2/app.db": dump(t, dbs["tenant2/app.db"])}
	ts := time.Now().UTC()
	for time.Now().UnixMilli() <= ts.UnixMilli() {
		// LTX timestamps are in milliseconds: the next ones must be later.
	}
	sqlite(t, dbs["tenant1/app.db"], "INSERT INTO t(n, v) VALUES (2, 'after T');\n")
	mustRun(t, "snapshot", dbs["tenant1/app.db"], "-b", url, "--name", "tenant1/app.db")
	dbs["tenant3/app.db"] = filepath.Join(src, "tenant3.db")
	createDB(t, dbs["tenant3/app.db"])
	mustRun(t, "snapshot", dbs["tenant3/app.db"], "-b", url, "--name", "tenant3/app.db")

	// Hostile names, each a valid LTX snapshot under a key the store
	// takes: not canonical, a directory of another database, a side file.
	snap := getObject(t, url, snapshotKey("other/x.db"))
	var hostile []string
	for _, name := range []string{`..\..\evil`, "../evil", "a/../../evil", "/abs/evil.db", "sp ace/./x.db", "col", "other/x.db-wal"} {
		if putObject(t, url, snapshotKey(name), snap) {
			hostile = append(hostile, name)
		}
	}
	for _, must := range []string{`..\..\evil`, "col", "other/x.db-wal"} {
		if !slices.Contains(hostile, must) {
			t.Fatalf("the store refused %q: the test needs it", must)
		}
	}

	root := t.TempDir() // the output directories go in here; nothing else may
	t.Run("Everything", func(t *testing.T) {
		out := filepath.Join(root, "every", "out")
		r := run(t, "restore", "--all", "-b", url, "-o", out, "--json", "--concurrency", "3")
		if r.code != exitFailed {
			t.Fatalf("exit %d, want %d (hostile names fail); stderr:\n%s", r.code, exitFailed, r.stderr)
		}
		got, sum := decodeRestoreAll(t, r.stdout)
		// Every source restored, and the three hostile names the store
		// must take failed with a reason. The store normalises some keys
		// (versitygw: "/abs/evil.db" is listed as "abs/evil.db"): those
		// come back as canonical names and are restored under out, as the
		// walk below checks.
		for name := range dbs {
			if got[name].Status != "restored" {
				t.Errorf("%s: %+v, want restored", name, got[name])
			}
		}
		for _, name := range []string{`..\..\evil`, "col", "other/x.db-wal"} {
			if got[name].Status != "failed" || got[name].Reason == "" {
				t.Errorf("%q: %+v, want failed with a reason", name, got[name])
			}
		}
		for name, r := range got {
			if _, err := replicate.CleanName(name); err != nil && r.Status != "failed" {
				t.Errorf("invalid name %q: %+v, want failed", name, r)
			}
		}
		if sum.Databases != len(got) || sum.Restored+sum.Failed != len(got) || sum.Failed < 3 || sum.Skipped != 0 {
			t.Errorf("summary %+v, want %d databases, all restored or failed, at least 3 failed", sum, len(got))
		}
		t.Logf("names listed: %v", statuses(got))
		for name, db := range dbs {
			p := filepath.Join(out, filepath.FromSlash(name))
			if got[name].Output != p {
				t.Errorf("%s: output %q, want %q", name, got[name].Output, p)
			}
			if dump(t, p) != dump(t, db) {
				t.Errorf("%s: restored dump differs from the source", name)
			}
		}
		if fi, err := os.Stat(filepath.Join(out, "tenant1")); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("directory tenant1: %v, %v; want mode 0700", fi.Mode(), err)
		}
		if r := got["col"]; !strings.Contains(r.Reason, "directory of other databases") {
			t.Errorf("col: reason %q, want the directory collision", r.Reason)
		}
		// Nothing outside out: the tree under root is out's alone.
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && p != root && p != filepath.Dir(out) && !strings.HasPrefix(p, out) {
				t.Errorf("%s written outside the output directory", p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("PrefixPattern", func(t *testing.T) {
		out := filepath.Join(root, "sel")
		r := run(t, "restore", "--all", "-b", url, "-o", out, "--prefix", "tenant", "--pattern", "tenant[12]/*")
		if r.code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
		}
		if n := countLines(r.stdout, "restored tenant"); n != 2 || !strings.Contains(r.stdout, "2 restored, 0 skipped, 0 failed of 2") {
			t.Errorf("stdout:\n%s\nwant 2 restored lines and the summary", r.stdout)
		}
		var files []string
		filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(out, p)
				files = append(files, filepath.ToSlash(rel))
			}
			return err
		})
		if want := []string{"tenant1/app.db", "tenant2/app.db"}; !slices.Equal(files, want) {
			t.Errorf("files %v, want %v", files, want)
		}
		if dump(t, filepath.Join(out, "tenant1", "app.db")) != dump(t, dbs["tenant1/app.db"]) {
			t.Error("tenant1: restored dump differs from the source")
		}

		// Again: the outputs exist. Refused without --force, skipped
		// with --if-db-not-exists (and left as they are).
		r = run(t, "restore", "--all", "-b", url, "-o", out, "--prefix", "tenant", "--pattern", "tenant[12]/*")
		if r.code != exitFailed || countLines(r.stdout, "--force") != 2 {
			t.Errorf("exit %d, stdout:\n%s\nwant %d and 2 failures naming --force", r.code, r.stdout, exitFailed)
		}
		r = run(t, "restore", "--all", "-b", url, "-o", out, "--prefix", "tenant", "--pattern", "tenant[12]/*", "--if-db-not-exists")
		if r.code != 0 || countLines(r.stdout, "skipped tenant") != 2 {
			t.Errorf("exit %d, stdout:\n%s\nwant 0 and 2 skipped", r.code, r.stdout)
		}
		r = run(t, "restore", "--all", "-b", url, "-o", out, "--prefix", "tenant", "--pattern", "tenant[12]/*", "--force")
		if r.code != 0 || countLines(r.stdout, "restored tenant") != 2 {
			t.Errorf("--force: exit %d, stdout:\n%s\nwant 0 and 2 restored", r.code, r.stdout)
		}
	})

	t.Run("Timestamp", func(t *testing.T) {
		out := filepath.Join(root, "at")
		r := run(t, "restore", "--all", "-b", url, "-o", out, "--prefix", "tenant", "--timestamp", ts.Format(time.RFC3339Nano), "--json")
		if r.code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
		}
		got, sum := decodeRestoreAll(t, r.stdout)
		want := map[string]string{"tenant1/app.db": "restored", "tenant2/app.db": "restored", "tenant3/app.db": "skipped"}
		if st := statuses(got); !maps.Equal(st, want) {
			t.Fatalf("statuses %v, want %v", st, want)
		}
		if r := got["tenant3/app.db"]; !strings.Contains(r.Reason, "no backup at that time") {
			t.Errorf("tenant3: reason %q, want no backup at that time", r.Reason)
		}
		if sum.Restored != 2 || sum.Skipped != 1 || sum.Failed != 0 {
			t.Errorf("summary %+v", sum)
		}
		for name, want := range dumpsAtT {
			if got := dump(t, filepath.Join(out, filepath.FromSlash(name))); got != want {
				t.Errorf("%s: restored dump is not the state at T", name)
			}
		}
	})

	t.Run("NoneMatches", func(t *testing.T) {
		out := filepath.Join(root, "none")
		r := run(t, "restore", "--all", "-b", url, "-o", out, "--prefix", "nosuch")
		if r.code != exitNoBackup {
			t.Errorf("exit %d, want %d; stderr:\n%s", r.code, exitNoBackup, r.stderr)
		}
		r = run(t, "restore", "--all", "-b", url, "-o", out, "--prefix", "nosuch", "--if-replica-exists")
		if r.code != 0 {
			t.Errorf("--if-replica-exists: exit %d, want 0; stderr:\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("output directory created for nothing: %v", err)
		}
	})
}

// TestRestoreIfFlags: a single restore's exit statuses: 3 for a database
// the target does not hold, 0 with --if-replica-exists (nothing written);
// an existing output is refused (1), or left untouched with
// --if-db-not-exists (0).
func TestRestoreIfFlags(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "if")
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, 'x');\n")
	mustRun(t, "snapshot", db, "-b", url, "--name", "app.db")
	out := filepath.Join(dir, "out.db")

	r := run(t, "restore", "nope.db", "-b", url, "-o", out)
	if r.code != exitNoBackup || !strings.Contains(r.stderr, replicate.ErrNoBackup.Error()) {
		t.Errorf("no backup: exit %d, stderr %q; want %d and %q", r.code, r.stderr, exitNoBackup, replicate.ErrNoBackup)
	}
	r = run(t, "restore", "nope.db", "-b", url, "-o", out, "--if-replica-exists")
	if r.code != 0 || !strings.Contains(r.stdout, "skipped nope.db") {
		t.Errorf("--if-replica-exists: exit %d, stdout %q; want 0 and a note", r.code, r.stdout)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--if-replica-exists wrote %s: %v", out, err)
	}

	if err := os.WriteFile(out, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, "restore", "app.db", "-b", url, "-o", out)
	if r.code != exitFailed || !strings.Contains(r.stderr, "--force") {
		t.Errorf("existing output: exit %d, stderr %q; want %d naming --force", r.code, r.stderr, exitFailed)
	}
	r = run(t, "restore", "app.db", "-b", url, "-o", out, "--if-db-not-exists", "--json")
	if r.code != 0 {
		t.Fatalf("--if-db-not-exists: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	var j restoreJSON
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || j.Status != "skipped" || !strings.Contains(j.Reason, "--if-db-not-exists") {
		t.Errorf("--if-db-not-exists --json: %q (%v); want status skipped", r.stdout, err)
	}
	if b, _ := os.ReadFile(out); string(b) != "not a database" {
		t.Error("--if-db-not-exists touched the existing output")
	}

	// Both flags, neither applies: restored, with the summary on stderr.
	out2 := filepath.Join(dir, "out2.db")
	r = run(t, "restore", "app.db", "-b", url, "-o", out2, "--if-db-not-exists", "--if-replica-exists")
	if r.code != 0 || dump(t, out2) != dump(t, db) {
		t.Fatalf("exit %d; stderr:\n%s\nwant 0 and the source's dump", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "restore: 1 files, ") {
		t.Errorf("stderr %q, want the one-line summary (not a terminal)", r.stderr)
	}
}
