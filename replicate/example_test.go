package replicate_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ncruces/go-sqlite3"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/replicate"
)

// Example replicates a database into a local directory, then restores it.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "walsync-example-")
	defer os.RemoveAll(dir)

	// The application: any process, any driver; here ncruces in-process.
	app, err := sqlite3.Open(filepath.Join(dir, "app.db"))
	if err != nil {
		panic(err)
	}
	defer app.Close()
	app.Exec(`PRAGMA journal_mode=WAL; CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('first')`)

	store, err := dirstore.Open(filepath.Join(dir, "backup"))
	if err != nil {
		panic(err)
	}
	r := replicate.New(store, replicate.Options{})
	if _, err := r.Add(ctx, filepath.Join(dir, "app.db"), "app.db"); err != nil {
		panic(err)
	}
	if err := r.Sync(ctx); err != nil { // first sync: a snapshot
		panic(err)
	}
	app.Exec(`INSERT INTO notes VALUES ('second')`)
	if err := r.Sync(ctx); err != nil { // a segment with the new commit
		panic(err)
	}
	r.Close()

	res, err := replicate.Restore(ctx, store, "app.db", filepath.Join(dir, "restored.db"), replicate.RestoreOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("restored TXID", uint64(res.TXID), "from", res.Files, "files")
	// Output: restored TXID 2 from 2 files
}

// ExampleListDatabases lists the backups in a target.
func ExampleListDatabases() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "walsync-example-")
	defer os.RemoveAll(dir)
	app, _ := sqlite3.Open(filepath.Join(dir, "shop.db"))
	defer app.Close()
	app.Exec(`PRAGMA journal_mode=WAL; CREATE TABLE t(x)`)
	store, _ := dirstore.Open(filepath.Join(dir, "backup"))
	r := replicate.New(store, replicate.Options{})
	r.Add(ctx, filepath.Join(dir, "shop.db"), "tenants/shop.db")
	r.Sync(ctx)
	r.Close()

	dbs, err := replicate.ListDatabases(ctx, store)
	if err != nil {
		panic(err)
	}
	for _, d := range dbs {
		fmt.Println(d.Name, "snapshots:", d.Snapshots, "restorable up to TXID", uint64(d.LastTXID))
	}
	// Output: tenants/shop.db snapshots: 1 restorable up to TXID 1
}
