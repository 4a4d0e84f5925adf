package vfs_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/vfs"
)

// env is an in-app replication setup: a replicator on a directory store
// and a registered walsync VFS.
type env struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	store *dirstore.Store
	r     *replicate.Replicator
	v     *vfs.VFS
	log   *strings.Builder
	logMu *sync.Mutex
}

var vfsSeq int

func newEnv(t *testing.T, opts vfs.Options) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), dir: t.TempDir()}
	st, err := dirstore.Open(filepath.Join(e.dir, "target"))
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	e.r = replicate.New(st, replicate.Options{SyncInterval: 0})
	vfsSeq++
	name := fmt.Sprintf("walsync-test-%d", vfsSeq)
	if e.v, err = vfs.Register(name, e.r, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.v.Unregister(); e.r.Close() })
	return e
}

// open opens a database/sql pool on path through the walsync VFS.
func (e *env) open(path, params string) *sql.DB {
	e.t.Helper()
	dsn := "file:" + path + "?vfs=" + e.v.Name() + "&_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)" + params
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db
}

// restore restores name into a new file and returns its path.
func (e *env) restore(name string) string {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "restored.db")
	if _, err := replicate.Restore(e.ctx, e.store, name, out, replicate.RestoreOptions{Check: replicate.IntegrityNone}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// rows returns a digest of table t: count and sum of lengths and ids.
func rows(t *testing.T, db *sql.DB) string {
	t.Helper()
	var n, sumID, sumLen int64
	if err := db.QueryRow("SELECT count(*), coalesce(sum(id),0), coalesce(sum(length(v)),0) FROM t").Scan(&n, &sumID, &sumLen); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d rows, ids %d, bytes %d", n, sumID, sumLen)
}

func openPlain(t *testing.T, path, params string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro"+params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestVFSReplicates(t *testing.T) {
	e := newEnv(t, vfs.Options{})
	path := filepath.Join(e.dir, "app.db")
	db := e.open(path, "")
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := db.Exec("INSERT INTO t(v) VALUES (randomblob(?))", 100+i*97); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.v.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	name, _ := replicate.NameFromPath(path)
	got := rows(t, openPlain(t, e.restore(name), ""))
	if want := rows(t, db); got != want {
		t.Fatalf("restored %s, want %s", got, want)
	}
	os.Stderr.WriteString("")
}

// run starts the replicator's background loop for the test.
func (e *env) run() {
	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.r.Run(ctx) })
	e.t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestPoolWithCheckpoints: a database/sql pool of 8 connections runs
// 10,000 transactions mixed with wal_checkpoint in all four modes while the
// replicator runs; the restore equals the source, passes integrity_check,
// and no snapshot follows the first.
func TestPoolWithCheckpoints(t *testing.T) {
	e := newEnv(t, vfs.Options{})
	e.r = e.r // background uploads
	e.run()
	path := filepath.Join(e.dir, "pool.db")
	db := e.open(path, "")
	db.SetMaxOpenConns(8)
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	modes := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
	const workers, perWorker = 8, 1250
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				var err error
				switch {
				case i%100 == 99:
					_, err = db.Exec("PRAGMA wal_checkpoint(" + modes[(w+i/100)%4] + ")")
				case i%17 == 0:
					_, err = db.Exec("DELETE FROM t WHERE n % 97 = ?", i%97)
				default:
					_, err = db.Exec("INSERT INTO t(n, v) VALUES (?, randomblob(?))", w*perWorker+i, (i*131)%5000)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := e.v.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	name, _ := replicate.NameFromPath(path)
	out := e.restore(name)
	restored := openPlain(t, out, "")
	if got, want := rows(t, restored), rows(t, db); got != want {
		t.Fatalf("restored %s, want %s", got, want)
	}
	var ok string
	if err := restored.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q, %v", ok, err)
	}
	if st := e.r.Stats(); st.Snapshots != 1 {
		t.Fatalf("snapshots = %d, want 1 (stats %+v)", st.Snapshots, st)
	}
	t.Logf("stats %+v", e.r.Stats())
}
