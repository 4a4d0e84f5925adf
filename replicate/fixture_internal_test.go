package replicate

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"

	"github.com/walsync/walsync/internal/memstore"
)

// fixture is a replicated database for white-box tests. Writes come from
// the sqlite3 CLI (another process); app is a connection of this process
// that keeps the database open, as a running application does, so that
// walsync follows its WAL instead of closing it.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	path  string
	store *memstore.Store
	wrap  func(Storage) Storage // if set, what the replicator writes through
	log   *logBuffer
	r     *Replicator
	d     *DB
	app   *sqlite3.Conn
}

// newFixture creates a WAL database with table t(n, v), opens it as a
// running application would and starts replicating it.
func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), store: memstore.New(), log: &logBuffer{}}
	f.path = filepath.Join(f.dir, "db.sqlite")
	runSQLite(t, f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
	f.openApp()
	f.start(opts)
	return f
}

// openApp opens the application's connection and reads, which attaches it
// to the WAL-index (it holds the database open from then on).
func (f *fixture) openApp() {
	f.t.Helper()
	if f.app != nil {
		return
	}
	conn, err := sqlite3.Open(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := conn.BusyTimeout(10e9); err != nil {
		f.t.Fatal(err)
	}
	if err := conn.Exec("SELECT count(*) FROM sqlite_schema"); err != nil {
		f.t.Fatal(err)
	}
	f.app = conn
	f.t.Cleanup(func() { f.closeApp() })
}

// closeApp closes the application's connection.
func (f *fixture) closeApp() {
	f.t.Helper()
	if f.app == nil {
		return
	}
	if err := f.app.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.app = nil
}

// logger returns a logger writing into f.log.
func (f *fixture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (f *fixture) start(opts Options) {
	f.t.Helper()
	opts.Logger = f.logger()
	var store Storage = f.store
	if f.wrap != nil {
		store = f.wrap(store)
	}
	f.r = New(store, opts)
	d, err := f.r.Add(f.ctx, f.path, "db")
	if err != nil {
		f.t.Fatal(err)
	}
	f.d = d
	f.t.Cleanup(func() { f.r.Close() })
	f.sync()
}
