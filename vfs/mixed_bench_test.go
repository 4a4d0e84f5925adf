package vfs_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/vfs"
)

// mixedWorkload is a speedtest1-like mix on one connection: inserts into
// indexed tables, indexed and primary-key selects, updates and deletes of
// single rows and ranges, one big update, REPLACEs on a text primary key
// and a join, in transactions from one statement to 5,000 rows, so that
// both per-commit costs and WAL volume (several auto-checkpoints and WAL
// resets per op) show.
func mixedWorkload(b *testing.B, db *sql.DB) {
	b.Helper()
	exec := func(q string, args ...any) {
		b.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	// txn runs n statements of q (args from fn) in one transaction.
	txn := func(n int, q string, fn func(i int) []any) {
		b.Helper()
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		st, err := tx.Prepare(q)
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if _, err := st.Exec(fn(i)...); err != nil {
				b.Fatalf("%s: %v", q, err)
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	query := func(q string, args ...any) {
		b.Helper()
		rows, err := db.Query(q, args...)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		rows.Close()
	}
	text := func(i int) string { return fmt.Sprintf("%08d some words of text %d", i*7919%100_000, i) }

	exec(`CREATE TABLE t1(a INTEGER, b INTEGER, c TEXT);
		CREATE INDEX t1b ON t1(b);
		CREATE TABLE t2(a INTEGER PRIMARY KEY, b INTEGER, c TEXT);
		CREATE INDEX t2c ON t2(c);
		CREATE TABLE t3(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID`)
	// Bulk: 20,000 rows in 5,000-row transactions.
	for j := range 4 {
		txn(5000, "INSERT INTO t1 VALUES (?, ?, ?)", func(i int) []any {
			n := j*5000 + i
			return []any{n, n * 7919 % 20_000, text(n)}
		})
	}
	// Ordered inserts, 200 transactions of 50 rows.
	for j := range 200 {
		txn(50, "INSERT INTO t2(b, c) VALUES (?, ?)", func(i int) []any { return []any{j*50 + i, text(j*50 + i)} })
	}
	// 300 autocommit inserts: one commit each.
	for i := range 300 {
		exec("INSERT INTO t2(b, c) VALUES (?, ?)", i, text(i))
	}
	// Indexed range selects and primary-key lookups.
	for i := range 300 {
		query("SELECT count(*), avg(a) FROM t1 WHERE b BETWEEN ? AND ?", i*60, i*60+100)
		query("SELECT c FROM t2 WHERE a = ?", i*31+1)
	}
	// 2,000 single-row updates in 100-row transactions.
	for j := range 20 {
		txn(100, "UPDATE t1 SET c = ? WHERE b = ?", func(i int) []any { return []any{text(i), (j*100 + i) * 13 % 20_000} })
	}
	// One big update of a whole table.
	exec("UPDATE t2 SET b = b + 1")
	// Range deletes, one per transaction, then single-row deletes.
	for i := range 50 {
		exec("DELETE FROM t1 WHERE b BETWEEN ? AND ?", i*200, i*200+20)
	}
	txn(1000, "DELETE FROM t2 WHERE a = ?", func(i int) []any { return []any{i*3 + 1} })
	// REPLACE on a text primary key, small and large transactions.
	for j := range 100 {
		txn(10, "REPLACE INTO t3 VALUES (?, ?)", func(i int) []any { return []any{text(j*10 + i), i} })
	}
	txn(5000, "REPLACE INTO t3 VALUES (?, ?)", func(i int) []any { return []any{text(i * 3), i} })
	for i := range 500 {
		query("SELECT v FROM t3 WHERE k = ?", text(i*2))
	}
	// A join and a refill.
	query("SELECT count(*) FROM t1 JOIN t2 ON t1.b = t2.b WHERE t1.a < 5000")
	exec("INSERT INTO t1 SELECT a + 100000, b, c FROM t1 WHERE a < 5000")
}

// BenchmarkMixed compares the walsync VFS with the plain ncruces OS VFS on
// mixedWorkload (WAL, synchronous=NORMAL, one connection), each op on a
// new database, the replicator uploading in the background at the default
// 1 s interval to a local directory. Compare the sub-benchmarks with
// benchstat; the machine's noise needs many alternating runs (see
// docs/vfs.md).
func BenchmarkMixed(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchVFS(b, false, mixedWorkload) })
	b.Run("walsync", func(b *testing.B) { benchVFS(b, true, mixedWorkload) })
}

// benchVFS runs workload once per op on a new database, through the
// walsync VFS (with its own replicator and target) or the plain OS VFS.
// Only the workload is timed: opening, closing and the replicator's final
// upload are not.
func benchVFS(b *testing.B, walsync bool, workload func(*testing.B, *sql.DB)) {
	const params = "&_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(5000)"
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		vfsName := "os"
		stop := func() {}
		if walsync {
			store, err := dirstore.Open(filepath.Join(dir, "target"))
			if err != nil {
				b.Fatal(err)
			}
			r := replicate.New(store, replicate.Options{SyncInterval: time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { r.Run(ctx) })
			benchSeq++
			v, err := vfs.Register(fmt.Sprintf("walsync-bench-%d", benchSeq), r, vfs.Options{})
			if err != nil {
				b.Fatal(err)
			}
			vfsName = v.Name()
			stop = func() { cancel(); wg.Wait(); v.Unregister() }
		}
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "bench.db")+"?vfs="+vfsName+params)
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		b.StartTimer()
		workload(b, db)
		b.StopTimer()
		db.Close()
		stop()
		b.StartTimer()
	}
}
