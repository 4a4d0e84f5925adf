package vfs_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
	"github.com/walsync/walsync/vfs"
)

// TestOneProcessBothPaths: one replicator, one uploader, one bucket on a
// real S3 server: two databases written in-process through the VFS and two
// written by external sqlite3 processes and watched. All four restore.
func TestOneProcessBothPaths(t *testing.T) {
	ctx := context.Background()
	endpoint, bucket := testenv.S3(t)
	store, err := s3.New(ctx, s3.Config{Bucket: bucket, Prefix: "both", Endpoint: endpoint, Region: testenv.Region, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	r := replicate.New(store, replicate.Options{SyncInterval: replicate.SyncImmediately})
	e := &env{t: t, ctx: ctx, dir: t.TempDir(), r: r}
	vfsSeq++
	if e.v, err = vfs.Register(fmt.Sprintf("walsync-both-%d", vfsSeq), r, vfs.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.v.Unregister) // after the connections close (cleanups run last first)
	e.run()

	sqlite3 := testenv.SQLite3(t)
	external := []string{filepath.Join(e.dir, "ext1.db"), filepath.Join(e.dir, "ext2.db")}
	for _, p := range external {
		if out, err := exec.Command(sqlite3, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);").CombinedOutput(); err != nil {
			t.Fatalf("sqlite3: %v: %s", err, out)
		}
		if _, err := r.Add(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	inApp := []string{filepath.Join(e.dir, "app1.db"), filepath.Join(e.dir, "app2.db")}
	var wg sync.WaitGroup
	for _, p := range inApp {
		db := e.open(p, "")
		wg.Go(func() {
			if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
				t.Error(err)
				return
			}
			for i := range 300 {
				if _, err := db.Exec("INSERT INTO t(v) VALUES (randomblob(?))", 10+i*31%3000); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for _, p := range external {
		wg.Go(func() {
			var sb strings.Builder
			sb.WriteString(".timeout 5000\n")
			for i := range 300 {
				fmt.Fprintf(&sb, "INSERT INTO t(v) VALUES (randomblob(%d));\n", 10+i*31%3000)
				if i%60 == 59 {
					sb.WriteString("PRAGMA busy_timeout=100; PRAGMA wal_checkpoint(TRUNCATE); PRAGMA busy_timeout=5000;\n")
				}
			}
			cmd := exec.Command(sqlite3, p)
			cmd.Stdin = strings.NewReader(sb.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("sqlite3: %v: %s", err, out)
			}
		})
	}
	wg.Wait()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(inApp, external...) {
		name, _ := replicate.NameFromPath(p)
		out := filepath.Join(t.TempDir(), "out.db")
		if _, err := replicate.Restore(ctx, store, name, out, replicate.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, want := rows(t, openPlain(t, out, "")), rows(t, openPlain(t, p, "")); got != want {
			t.Errorf("%s: restored %s, want %s", name, got, want)
		}
	}
	if st := r.Stats(); st.Snapshots != 4 {
		t.Errorf("snapshots = %d, want one per database", st.Snapshots)
	}
}
