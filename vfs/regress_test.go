package vfs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/vfs"
)

// TestJournalModeRoundTrip: WAL → a rollback journal mode → commits → WAL
// → commits, through the VFS. The commits made in rollback mode (and a
// table created then) are in the restore, whatever the mode. Before, the
// chain went on with the next WAL generation as if nothing had happened
// between: the rollback-mode commits were missing from a restore that
// passed integrity_check, with no WARN and no snapshot.
func TestJournalModeRoundTrip(t *testing.T) {
	for _, mode := range []string{"DELETE", "TRUNCATE", "PERSIST", "MEMORY"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, vfs.Options{})
			path := filepath.Join(e.dir, "app.db")
			db := e.open(path, "")
			db.SetMaxOpenConns(1) // the journal mode is a connection's
			for _, q := range []string{
				"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
				"INSERT INTO t(v) VALUES (randomblob(300))",
			} {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.v.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"PRAGMA journal_mode=" + mode,
				"INSERT INTO t(v) VALUES (randomblob(400))",
				"CREATE TABLE during(x)",
				"INSERT INTO during VALUES ('rollback mode')",
			} {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			var got string
			if err := db.QueryRow("PRAGMA journal_mode=WAL").Scan(&got); err != nil || got != "wal" {
				t.Fatalf("back to WAL: %q, %v", got, err)
			}
			if _, err := db.Exec("INSERT INTO t(v) VALUES (randomblob(500))"); err != nil {
				t.Fatal(err)
			}
			if err := e.v.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
			name, _ := replicate.NameFromPath(path)
			restored := openPlain(t, e.restore(name), "")
			if got, want := rows(t, restored), rows(t, db); got != want {
				t.Fatalf("restored %s, want %s", got, want)
			}
			var during string
			if err := restored.QueryRow("SELECT x FROM during").Scan(&during); err != nil || during != "rollback mode" {
				t.Fatalf("table created in rollback mode: %q, %v", during, err)
			}
		})
	}
}

// TestJournalModeStays: a database switched to a rollback journal mode and
// left there keeps being replicated (by snapshots) instead of going silent.
func TestJournalModeStays(t *testing.T) {
	e := newEnv(t, vfs.Options{})
	path := filepath.Join(e.dir, "app.db")
	db := e.open(path, "")
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
		"INSERT INTO t(v) VALUES (randomblob(300))",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.v.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"PRAGMA journal_mode=DELETE", "INSERT INTO t(v) VALUES (randomblob(400))"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.v.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	name, _ := replicate.NameFromPath(path)
	if got, want := rows(t, openPlain(t, e.restore(name), "")), rows(t, db); got != want {
		t.Fatalf("restored %s, want %s", got, want)
	}
}

// TestAppCloseReleases: once the application closes its last connection
// to a database and everything is uploaded, the replicator holds no
// descriptor and no entry for it; reopening replicates it again, without a
// snapshot. Before, every database an application ever opened kept two
// descriptors and a map entry for good.
func TestAppCloseReleases(t *testing.T) {
	e := newEnv(t, vfs.Options{})
	path := filepath.Join(e.dir, "app.db")
	db := e.open(path, "")
	for _, q := range []string{
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
		"INSERT INTO t(v) VALUES (randomblob(300))",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.v.DB(path); got != nil {
		t.Fatalf("DB(%s) = %v after the application closed it, want nil", path, got)
	}
	for _, d := range e.r.DBs() {
		if d.Path() == path {
			t.Fatalf("replicator still holds %s", path)
		}
	}
	if fds := openFDs(t, path); len(fds) != 0 {
		t.Fatalf("descriptors still open on the database: %v", fds)
	}
	before := e.r.Stats().Snapshots
	db = e.open(path, "")
	if _, err := db.Exec("INSERT INTO t(v) VALUES (randomblob(500))"); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.r.Stats().Snapshots - before; got != 0 {
		t.Fatalf("%d snapshots after reopening, want 0", got)
	}
	name, _ := replicate.NameFromPath(path)
	if got, want := rows(t, openPlain(t, e.restore(name), "")), rows(t, db); got != want {
		t.Fatalf("restored %s, want %s", got, want)
	}
}

// openFDs returns this process's descriptors on path or its -wal or -shm.
func openFDs(t *testing.T, path string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, path) && !strings.HasPrefix(target, path+"-walsync") {
			out = append(out, target)
		}
	}
	return out
}
