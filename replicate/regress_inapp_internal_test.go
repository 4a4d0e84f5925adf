package replicate

import (
	"context"
	"github.com/superfly/ltx"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/inapp"
	"github.com/walsync/walsync/internal/memstore"
)

// blockingCodec is an identity PageCodec whose reader of the database file
// blocks at its first read past the header until released, holding a
// snapshot in the middle of reading the database.
type blockingCodec struct {
	dbPath  string
	once    sync.Once
	blocked chan struct{} // closed once a read blocks
	release chan struct{} // closed to let reads go on
}

func newBlockingCodec(dbPath string) *blockingCodec {
	return &blockingCodec{dbPath: dbPath, blocked: make(chan struct{}), release: make(chan struct{})}
}

func (c *blockingCodec) Reader(r io.ReaderAt) io.ReaderAt {
	if f, ok := r.(*os.File); ok && f.Name() == c.dbPath {
		return blockingReader{r: r, c: c}
	}
	return r
}

func (c *blockingCodec) StorePage(pgno uint32, page []byte) ([]byte, error) { return page, nil }

type blockingReader struct {
	r io.ReaderAt
	c *blockingCodec
}

func (b blockingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= 4096 {
		b.c.once.Do(func() { close(b.c.blocked) })
		<-b.c.release
	}
	return b.r.ReadAt(p, off)
}

// TestInAppResetDuringSnapshot: while a snapshot of an in-app database
// reads the database file, the VFS's WAL-reset gate (called by SQLite on
// the application's goroutine, holding its WAL locks) returns without
// waiting for the snapshot. Before, the snapshot held the mutex the gate
// takes for its whole read: every in-app writer that reset the WAL stalled
// behind it.
func TestInAppResetDuringSnapshot(t *testing.T) {
	f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), store: memstore.New(), log: &logBuffer{}}
	f.path = f.dir + "/app.db"
	runSQLite(t, f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
	f.write(50) // several pages
	f.openApp()
	codec := newBlockingCodec(f.path)
	f.r = New(f.store, Options{SyncInterval: SyncImmediately, Logger: f.logger()})
	defer f.r.Close()
	d, hooks, err := f.r.AddInApp(f.ctx, f.path, "db", InAppOptions{Codec: codec}, inapp.Token{})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	hooks.Opened()
	synced := make(chan error, 1)
	go func() { synced <- f.r.Sync(f.ctx) }() // the first snapshot
	select {
	case <-codec.blocked:
	case err := <-synced:
		t.Fatalf("the sync ended before the snapshot read the database: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot never read the database")
	}
	reset := make(chan struct{})
	go func() {
		hooks.BeforeWALReset(nil) // SQLite truncating the WAL
		close(reset)
	}()
	select {
	case <-reset:
	case <-time.After(10 * time.Second):
		close(codec.release)
		<-synced
		t.Fatal("the WAL-reset gate waited for the snapshot")
	}
	close(codec.release)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	f.sync()
	f.checkRestore()
}

// TestInAppSnapshotDuringRollbackWrite: an in-app snapshot reads the
// database file without the database's mutex. If the application leaves
// WAL mode meanwhile (the WAL deleted through the gate) and writes the file
// directly in a rollback journal mode, the pages read before and after
// that write must not make one snapshot: it is discarded and taken again.
// Before, it was kept (the model test's torn restore, seed 633842257:
// "overflow list length", "Page N is never used"), and a restore of the
// live target until the next snapshot failed integrity_check.
func TestInAppSnapshotDuringRollbackWrite(t *testing.T) {
	f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), store: memstore.New(), log: &logBuffer{}}
	f.path = f.dir + "/app.db"
	runSQLite(t, f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
	f.write(50)
	f.openApp() // keeps the WAL: the snapshot reads the file and the WAL's frames
	f.write(20)
	before := runSQLite(t, f.path, ".dump")
	codec := newBlockingCodec(f.path)
	f.r = New(f.store, Options{SyncInterval: SyncImmediately, Logger: f.logger()})
	defer f.r.Close()
	d, hooks, err := f.r.AddInApp(f.ctx, f.path, "db", InAppOptions{Codec: codec}, inapp.Token{})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	hooks.Opened()
	synced := make(chan error, 1)
	go func() { synced <- f.r.Sync(f.ctx) }() // the first snapshot: page 1 read, then blocked
	select {
	case <-codec.blocked:
	case err := <-synced:
		t.Fatalf("the sync ended before the snapshot read the database: %v", err)
	}
	// The application leaves WAL mode (SQLite deletes the WAL through the
	// gate) and writes the file directly.
	f.closeApp()
	hooks.BeforeWALReset(nil)
	runSQLite(t, f.path, "PRAGMA journal_mode=DELETE;\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 400) INSERT INTO t SELECT i, randomblob(900) FROM c;\n")
	after := runSQLite(t, f.path, ".dump")
	close(codec.release)
	<-synced // the snapshot is kept or discarded; either way the target must be consistent

	out := filepath.Join(t.TempDir(), "out.db")
	res, rerr := Restore(f.ctx, f.store, "db", out, RestoreOptions{})
	if rerr == nil {
		if got := runSQLite(t, out, "PRAGMA integrity_check;"); got != "ok\n" {
			t.Fatalf("restore of the target after the snapshot: integrity_check: %s", got)
		}
		if got := runSQLite(t, out, ".dump"); got != before && got != after {
			t.Fatal("restore of the target after the snapshot is neither the state before the write nor after it")
		}
	}
	if err := f.r.Sync(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.checkRestore()
	// Every restore point is a state that existed: restore each TXID.
	for txid := ltx.TXID(1); txid <= res.TXID+2; txid++ {
		out := filepath.Join(t.TempDir(), "at.db")
		if _, err := Restore(f.ctx, f.store, "db", out, RestoreOptions{TXID: txid}); err != nil {
			continue // not a restore point
		}
		if got := runSQLite(t, out, "PRAGMA integrity_check;"); got != "ok\n" {
			t.Fatalf("restore at TXID %s: integrity_check: %s", txid, got)
		}
		if got := runSQLite(t, out, ".dump"); got != before && got != after {
			t.Fatalf("restore at TXID %s is neither the state before the write nor after it", txid)
		}
	}
}
