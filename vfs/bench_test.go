package vfs_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
	"github.com/walsync/walsync/vfs"
)

// insertWorkload runs 100,000 inserts in 1,000-row transactions.
func insertWorkload(b *testing.B, db *sql.DB) {
	b.Helper()
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, s TEXT)"); err != nil {
		b.Fatal(err)
	}
	for range 100 {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		st, err := tx.Prepare("INSERT INTO t(n, s) VALUES (?, ?)")
		if err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			if _, err := st.Exec(i, "some text of about one hundred bytes, some text of about one hundred bytes, some te"); err != nil {
				b.Fatal(err)
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

var benchSeq int

// BenchmarkInsert compares the walsync VFS with the plain ncruces OS VFS
// on the same workload (WAL, synchronous=NORMAL): 100,000 inserts in
// 1,000-row transactions per op, the replicator uploading in the
// background (default 1 s interval) to a local target.
func BenchmarkInsert(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchVFS(b, false, insertWorkload) })
	b.Run("walsync", func(b *testing.B) { benchVFS(b, true, insertWorkload) })
}

// BenchmarkCommitLatency measures commit → durable in a real S3 server
// (versitygw on loopback): the time from a commit's return until the
// segment holding it is uploaded, without forcing the upload
// (replicate.DB.WaitDurable), at once (replicate.SyncImmediately, named
// interval=0s) and at a 1 s sync interval. It reports the
// 50th and 99th percentiles.
func BenchmarkCommitLatency(b *testing.B) {
	endpoint, bucket := testenv.S3(b)
	for _, interval := range []time.Duration{0, time.Second} {
		b.Run("interval="+interval.String(), func(b *testing.B) {
			ctx := context.Background()
			store, err := s3.New(ctx, s3.Config{Bucket: bucket, Prefix: fmt.Sprintf("lat-%d", benchSeq), Endpoint: endpoint, Region: testenv.Region, PathStyle: true})
			if err != nil {
				b.Fatal(err)
			}
			opts := replicate.Options{SyncInterval: interval}
			if interval == 0 {
				opts.SyncInterval = replicate.SyncImmediately // named "interval=0s"
			}
			r := replicate.New(store, opts)
			runCtx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Go(func() { r.Run(runCtx) })
			defer func() { cancel(); wg.Wait() }()
			benchSeq++
			v, err := vfs.Register(fmt.Sprintf("walsync-latency-%d", benchSeq), r, vfs.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Unregister()
			path := filepath.Join(b.TempDir(), "latency.db")
			db, err := sql.Open("sqlite3", "file:"+path+"?vfs="+v.Name()+"&_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(5000)")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
				b.Fatal(err)
			}
			if err := v.Flush(ctx); err != nil { // first snapshot out of the way
				b.Fatal(err)
			}
			d := v.DB(path)
			if d == nil {
				b.Fatal("database not registered")
			}
			var lat []time.Duration
			for b.Loop() {
				if _, err := db.Exec("INSERT INTO t(v) VALUES (randomblob(1000))"); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := d.WaitDurable(ctx, t0); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

// BenchmarkMemoryPerDB reports the heap walsync adds per database opened
// through the VFS: 100 databases with one connection each, a few commits
// each, replicated and idle, against the same databases on the plain VFS.
func BenchmarkMemoryPerDB(b *testing.B) {
	const n = 100
	heap := func(walsync bool) uint64 {
		dir := b.TempDir()
		vfsName := "os"
		var r *replicate.Replicator
		var v *vfs.VFS
		if walsync {
			store, err := dirstore.Open(filepath.Join(dir, "target"))
			if err != nil {
				b.Fatal(err)
			}
			r = replicate.New(store, replicate.Options{SyncInterval: replicate.SyncImmediately})
			benchSeq++
			if v, err = vfs.Register(fmt.Sprintf("walsync-mem-%d", benchSeq), r, vfs.Options{}); err != nil {
				b.Fatal(err)
			}
			vfsName = v.Name()
		}
		var dbs []*sql.DB
		for i := range n {
			db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s/db%03d.db?vfs=%s&_pragma=journal_mode(wal)&_pragma=cache_size(-64)", dir, i, vfsName))
			if err != nil {
				b.Fatal(err)
			}
			db.SetMaxOpenConns(1)
			if _, err := db.Exec("CREATE TABLE t(v); INSERT INTO t VALUES (randomblob(500))"); err != nil {
				b.Fatal(err)
			}
			dbs = append(dbs, db)
		}
		if v != nil {
			if err := v.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		for _, db := range dbs {
			db.Close()
		}
		if v != nil {
			r.Close()
			v.Unregister()
		}
		return ms.HeapAlloc
	}
	for b.Loop() {
		plain := heap(false)
		with := heap(true)
		b.ReportMetric((float64(with)-float64(plain))/n, "heap-B/db")
	}
}
