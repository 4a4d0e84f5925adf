package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

// TestWatchRestoreIfMissing: watch --restore-if-missing restores a missing
// database given by path and the missing databases of --dir from the
// target (versitygw) before watching, then replicates their further
// commits: a restore after more writes equals the local file. A database
// with no backup is replicated once an application creates it.
func TestWatchRestoreIfMissing(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "rim")
	src := t.TempDir()
	sources := map[string]string{} // name -> source database
	for _, name := range []string{"app.db", "tenants/t1/app.db", "tenants/t2/app.db", "tenants/notes.txt"} {
		db := filepath.Join(src, strings.ReplaceAll(name, "/", "_"))
		createDB(t, db)
		sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, '"+name+"');\n")
		mustRun(t, "snapshot", db, "-b", url, "--name", name)
		sources[name] = db
	}

	// The container's volume: empty, except one tenant already present
	// (it must be left alone).
	vol := t.TempDir()
	app := filepath.Join(vol, "data", "app.db")
	tenants := filepath.Join(vol, "tenants-dir")
	local := filepath.Join(tenants, "t2", "app.db")
	createDB(t, local)
	sqlite(t, local, "INSERT INTO t(n, v) VALUES (7, 'local');\n")
	localDump := dump(t, local)
	fresh := filepath.Join(vol, "data", "fresh.db") // no backup

	// Names of the --dir databases are relative to it: the tenants under
	// the prefix "tenants/" restore from a target of their own.
	dirURL := s3URL(endpoint, bucket, "rim/tenants")
	logPath := filepath.Join(t.TempDir(), "watch.log")
	w := startWatch(t, logPath, "-b", url, "--restore-if-missing", "--sync-interval", "100ms", "--name", "app.db", app)
	wd := startWatch(t, filepath.Join(t.TempDir(), "watchdir.log"), "-b", dirURL, "--restore-if-missing", "--sync-interval", "100ms", "--dir", tenants)
	wf := startWatch(t, filepath.Join(t.TempDir(), "fresh.log"), "-b", url, "--restore-if-missing", "--sync-interval", "100ms", fresh)

	if got, want := dump(t, app), dump(t, sources["app.db"]); got != want {
		t.Fatalf("restored %s differs from its source", app)
	}
	if got, want := dump(t, filepath.Join(tenants, "t1", "app.db")), dump(t, sources["tenants/t1/app.db"]); got != want {
		t.Errorf("tenant t1 not restored from its backup")
	}
	if got := dump(t, local); got != localDump {
		t.Errorf("tenant t2 existed locally and was changed")
	}
	if _, err := os.Stat(filepath.Join(tenants, "notes.txt")); !os.IsNotExist(err) {
		t.Errorf("notes.txt (not matching --pattern) restored: %v", err)
	}
	if fi, err := os.Stat(filepath.Dir(app)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory %s: %v, %v; want mode 0700", filepath.Dir(app), fi.Mode(), err)
	}

	// Further commits, through the running watchers.
	sqlite(t, app, "INSERT INTO t(n, v) VALUES (2, 'after restore');\n")
	sqlite(t, filepath.Join(tenants, "t1", "app.db"), "INSERT INTO t(n, v) VALUES (2, 'after restore');\n")
	createDB(t, fresh)
	sqlite(t, fresh, "INSERT INTO t(n, v) VALUES (3, 'fresh');\n")
	waitFor(t, func() bool { return strings.Contains(tail(wf.log), "missing database created: replicating it") })
	w.stop()
	wd.stop()
	wf.stop()
	if !strings.Contains(tail(wf.log), "missing database has no backup") {
		t.Errorf("no note about the database without a backup; log:\n%s", tail(wf.log))
	}

	for _, c := range []struct{ url, name, local string }{
		{url, "app.db", app},
		{dirURL, "t1/app.db", filepath.Join(tenants, "t1", "app.db")},
		{dirURL, "t2/app.db", local},
		{url, strings.TrimPrefix(fresh, "/"), fresh},
	} {
		out := filepath.Join(t.TempDir(), "again.db")
		mustRun(t, "restore", c.name, "-b", c.url, "-o", out)
		if got, want := dump(t, out), dump(t, c.local); got != want {
			t.Errorf("%s: restore after further commits differs from the local database", c.name)
		}
	}
}

// TestConfigRestoreIfMissing: restore-if-missing: true in the config file
// restores a missing database of its list before watching.
func TestConfigRestoreIfMissing(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "cfg")
	src := filepath.Join(t.TempDir(), "src.db")
	createDB(t, src)
	sqlite(t, src, "INSERT INTO t(n, v) VALUES (1, 'from the config');\n")
	mustRun(t, "snapshot", src, "-b", url, "--name", "main")

	db := filepath.Join(t.TempDir(), "main.db")
	cfg := filepath.Join(t.TempDir(), "walsync.yml")
	yml := "target: " + url + "\nrestore-if-missing: true\ndatabases:\n  - path: " + db + "\n    name: main\n"
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, filepath.Join(t.TempDir(), "watch.log"), "-c", cfg)
	if got, want := dump(t, db), dump(t, src); got != want {
		t.Errorf("%s not restored from its backup", db)
	}
	w.stop()
}
