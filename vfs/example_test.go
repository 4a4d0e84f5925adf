package vfs_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/vfs"
)

// Example registers the walsync VFS, writes through it, flushes, closes,
// and restores the replicated database.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "walsync-vfs-example-")
	defer os.RemoveAll(dir)

	// One replicator (and uploader) for the process; here a local target.
	store, err := dirstore.Open(filepath.Join(dir, "backup"))
	if err != nil {
		panic(err)
	}
	r := replicate.New(store, replicate.Options{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }() // background uploads

	// Register the VFS and open databases through it.
	v, err := vfs.Register("walsync-example", r, vfs.Options{})
	if err != nil {
		panic(err)
	}
	path := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?vfs=walsync-example&_pragma=journal_mode(wal)&_pragma=busy_timeout(5000)")
	if err != nil {
		panic(err)
	}
	db.Exec(`CREATE TABLE notes(body TEXT)`)
	db.Exec(`INSERT INTO notes VALUES ('replicated as committed')`)

	// Flush: everything committed so far is durable in the target.
	if err := v.Flush(ctx); err != nil {
		panic(err)
	}
	db.Close()
	stop()
	<-done
	v.Unregister()

	name, _ := replicate.NameFromPath(path)
	out := filepath.Join(dir, "restored.db")
	if _, err := replicate.Restore(ctx, store, name, out, replicate.RestoreOptions{}); err != nil {
		panic(err)
	}
	restored, _ := sql.Open("sqlite3", "file:"+out+"?mode=ro")
	defer restored.Close()
	var body string
	restored.QueryRow(`SELECT body FROM notes`).Scan(&body)
	fmt.Println(body)
	// Output: replicated as committed
}
