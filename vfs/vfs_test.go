package vfs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver"
	sqlite3vfs "github.com/ncruces/go-sqlite3/vfs"
	_ "github.com/ncruces/go-sqlite3/vfs/adiantum"
	_ "github.com/ncruces/go-sqlite3/vfs/xts"

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
	ropts := replicate.Options{SyncInterval: replicate.SyncImmediately}
	if os.Getenv("WALSYNC_TEST_LOG") != "" { // for debugging a failure
		ropts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e.r = replicate.New(st, ropts)
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

// storedBytes returns every object in the target concatenated.
func (e *env) storedBytes() []byte {
	e.t.Helper()
	var all []byte
	err := filepath.WalkDir(e.store.Dir(), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		all = append(all, b...)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return all
}

// TestEncryptedStacks: over adiantum or xts, the target holds only
// ciphertext (a plaintext marker appears in no object, compressed or not),
// and the restored file opens with the same VFS and key.
func TestEncryptedStacks(t *testing.T) {
	const marker = "PLAINTEXT-MARKER-7f3a9c"
	for _, c := range []struct {
		name string
		enc  vfs.Encryption
		base string
		key  string
	}{
		{"Adiantum", vfs.Adiantum, "adiantum", "&hexkey=" + strings.Repeat("ab", 32)},
		{"AdiantumTextKey", vfs.Adiantum, "adiantum", "&textkey=correct-horse"},
		{"XTS", vfs.XTS, "xts", "&hexkey=" + strings.Repeat("cd", 32)},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, vfs.Options{Base: sqlite3vfs.Find(c.base), Encryption: c.enc})
			path := filepath.Join(e.dir, "secret.db")
			db := e.open(path, c.key)
			if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
				t.Fatal(err)
			}
			for i := range 300 {
				if _, err := db.Exec("INSERT INTO t(v) VALUES (?)", strings.Repeat(marker, 1+i%40)); err != nil {
					t.Fatal(err)
				}
				if i%100 == 50 {
					if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := e.v.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
			if all := e.storedBytes(); len(all) == 0 || strings.Contains(string(all), marker) || strings.Contains(string(all), "SQLite format 3") {
				t.Fatalf("target holds plaintext (%d bytes)", len(all))
			}
			name, _ := replicate.NameFromPath(path)
			// The integrity check needs the VFS and key; without them the
			// restore refuses and leaves nothing behind.
			noKey := filepath.Join(t.TempDir(), "nokey.db")
			if _, err := replicate.Restore(e.ctx, e.store, name, noKey, replicate.RestoreOptions{}); !errors.Is(err, replicate.ErrEncrypted) {
				t.Fatalf("restore without key: err = %v, want ErrEncrypted", err)
			}
			if _, err := os.Stat(noKey); err == nil {
				t.Fatal("restore without key left a file")
			}
			out := filepath.Join(t.TempDir(), "restored.db")
			if _, err := replicate.Restore(e.ctx, e.store, name, out, replicate.RestoreOptions{CheckParams: "vfs=" + c.base + c.key}); err != nil {
				t.Fatalf("restore with the key and integrity_check: %v", err)
			}
			if b, _ := os.ReadFile(out); strings.Contains(string(b), marker) {
				t.Fatal("restored file holds plaintext")
			}
			restored := openPlain(t, out, "&vfs="+c.base+c.key)
			if got, want := rows(t, restored), rows(t, db); got != want {
				t.Fatalf("restored %s, want %s", got, want)
			}
			var ok string
			if err := restored.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
				t.Fatalf("integrity_check: %q, %v", ok, err)
			}
		})
	}
}

// TestChecksummedPages: with ncruces' page checksums on (8 reserve
// bytes), restored pages carry valid checksums even though the WAL frames
// they come from hold stale ones.
func TestChecksummedPages(t *testing.T) {
	e := newEnv(t, vfs.Options{})
	path := filepath.Join(e.dir, "cksm.db")
	db := e.open(path, "")
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(e.ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Raw(func(c any) error {
		return c.(interface{ Raw() *sqlite3.Conn }).Raw().EnableChecksums("main")
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := conn.ExecContext(e.ctx, "INSERT INTO t(v) VALUES (randomblob(?))", 50+i*13); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if err := e.v.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	name, _ := replicate.NameFromPath(path)
	restored := openPlain(t, e.restore(name), "")
	if got, want := rows(t, restored), rows(t, db); got != want {
		t.Fatalf("restored %s, want %s", got, want)
	}
	// Reading every page verifies every checksum (IOERR_DATA otherwise).
	var ok string
	if err := restored.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check with checksum verification: %q, %v", ok, err)
	}
	var n int
	if err := restored.QueryRow("SELECT count(*) FROM t WHERE length(v) > 0").Scan(&n); err != nil {
		t.Fatalf("read restored pages: %v", err)
	}
}
