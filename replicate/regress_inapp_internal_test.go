package replicate

import (
	"context"
	"io"
	"os"
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
