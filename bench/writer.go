package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// WriterConfig configures the load generator that `walsync bench` runs as a
// separate process, so that walsync's figures are its own.
type WriterConfig struct {
	Dir      string        // directory holding the databases
	DBs      int           // number of databases, named db000000.db ...
	Active   int           // the first Active databases are written to
	Rate     float64       // commits per second per active database
	RowBytes int           // payload bytes per row
	Duration time.Duration // how long to write
	Init     bool          // create the databases and exit
	Ready    io.Writer     // if set, "ready" is written to it once the databases are open
	// CommitLog, if set, is a file the writer creates and fills with one
	// line per commit, "<database index> <id> <unix nanoseconds>", the time
	// being when SQLite acknowledged the commit (for the replication lag).
	CommitLog string
}

// readyLine is what the writer prints once its connections are open, so
// that the bench starts the tools only against a running application.
const readyLine = "ready"

// DBPath returns the path of database i.
func DBPath(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("db%06d.db", i)) }

// Schema is the table every bench database holds.
const Schema = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, v BLOB NOT NULL)"

// RunWriter creates the databases (Init) or drives commits into the active
// ones at the configured rate, spreading them evenly over time from a single
// goroutine, until Duration has passed or ctx ends.
//
// Each commit inserts one row whose id is the database's next sequence
// number (one more than the largest id), so that a restored copy tells
// which commits it holds: those with an id up to its max(id).
func RunWriter(ctx context.Context, cfg WriterConfig) (err error) {
	if cfg.Init {
		return initDBs(ctx, cfg)
	}
	clog, err := createCommitLog(cfg.CommitLog)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, clog.close()) }()
	if cfg.Active <= 0 || cfg.Rate <= 0 {
		if cfg.Ready != nil {
			fmt.Fprintln(cfg.Ready, readyLine)
		}
		sleep(ctx, cfg.Duration)
		return nil
	}
	conns := make([]*sqlite3.Conn, cfg.Active)
	stmts := make([]*sqlite3.Stmt, cfg.Active)
	seqs := make([]int64, cfg.Active) // the id of the last row of each database
	defer func() {
		for i := range conns {
			if stmts[i] != nil {
				stmts[i].Close()
			}
			if conns[i] != nil {
				conns[i].Close()
			}
		}
	}()
	for i := range conns {
		c, err := openBenchDB(DBPath(cfg.Dir, i))
		if err != nil {
			return err
		}
		conns[i] = c
		if seqs[i], err = maxID(c); err != nil {
			return fmt.Errorf("read %s: %w", DBPath(cfg.Dir, i), err)
		}
		if stmts[i], _, err = c.Prepare("INSERT INTO t(id, ts, v) VALUES (?, ?, ?)"); err != nil {
			return err
		}
	}
	if cfg.Ready != nil {
		fmt.Fprintln(cfg.Ready, readyLine)
	}
	payload := make([]byte, cfg.RowBytes)
	interval := time.Duration(float64(time.Second) / (cfg.Rate * float64(cfg.Active)))
	deadline := time.Now().Add(cfg.Duration)
	next := time.Now()
	for i := 0; ; i = (i + 1) % cfg.Active {
		if err := ctx.Err(); err != nil || time.Now().After(deadline) {
			return nil
		}
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		next = next.Add(interval)
		rand.Read(payload)
		st := stmts[i]
		seq := seqs[i] + 1
		if err := errors.Join(st.BindInt64(1, seq), st.BindInt64(2, time.Now().UnixNano()), st.BindBlob(3, payload), st.Exec()); err != nil {
			return fmt.Errorf("write %s: %w", DBPath(cfg.Dir, i), err)
		}
		seqs[i] = seq
		clog.add(i, seq, time.Now()) // SQLite has acknowledged the commit
	}
}

// maxID returns the largest id of table t, 0 if it is empty.
func maxID(c *sqlite3.Conn) (int64, error) {
	st, _, err := c.Prepare("SELECT coalesce(max(id), 0) FROM t")
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if !st.Step() {
		return 0, errors.Join(errors.New("no row"), st.Err())
	}
	return st.ColumnInt64(0), nil
}

func openBenchDB(path string) (*sqlite3.Conn, error) {
	c, err := sqlite3.Open("file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return c, nil
}

// initDBs creates the databases: one with SQLite, closed cleanly (so its
// WAL is checkpointed and removed), then copies of its file. Opening a
// connection per database instead takes about 5 ms each (50 s for 10,000).
func initDBs(ctx context.Context, cfg WriterConfig) error {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	tmpl := filepath.Join(cfg.Dir, ".template.db")
	defer os.Remove(tmpl)
	c, err := openBenchDB(tmpl)
	if err != nil {
		return err
	}
	err = c.Exec(Schema + "; INSERT INTO t(ts, v) VALUES (0, randomblob(100))")
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("init %s: %w", tmpl, err)
	}
	data, err := os.ReadFile(tmpl)
	if err != nil {
		return err
	}
	if _, err := os.Stat(tmpl + "-wal"); err == nil {
		return fmt.Errorf("init %s: the WAL was not removed on close", tmpl)
	}
	for i := range cfg.DBs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := os.WriteFile(DBPath(cfg.Dir, i), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
