package replicate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

// TestNameDotDirectory: a database under a dot-directory, named after its
// path, is replicated to a file:// target. Before, Add accepted it and
// every upload failed with "path element .local starts with a dot".
func TestNameDotDirectory(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), ".local", "share")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "app.db")
	sqlite(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER); INSERT INTO t VALUES (1);")
	store, err := dirstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := replicate.New(store, replicate.Options{})
	defer r.Close()
	d, err := r.Add(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if _, err := replicate.Restore(ctx, store, d.Name(), out, replicate.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := sqlite(t, out, "SELECT n FROM t;"), "1\n"; got != want {
		t.Fatalf("restored rows %q, want %q", got, want)
	}
}

// TestNameRefusedAtAdd: a name the target cannot hold is refused by Add,
// with one line naming the database, instead of failing every upload.
func TestNameRefusedAtAdd(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "app.db")
	sqlite(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
	s3c, err := s3.New(ctx, s3.Config{Bucket: "b", Prefix: strings.Repeat("p", 900), Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		store  replicate.Storage
		dbName string
		why    string
	}{
		// The longest key is the name plus "/0009/<16 hex>-<16 hex>.ltx".
		{"Len", memstore.New(), strings.Repeat("n", 1024-43+1), "over the limit of 1024"},
		{"UTF8", memstore.New(), "bad\xff.db", "not valid UTF-8"},
		{"S3Prefix", s3c, strings.Repeat("n", 100), "over S3's limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := replicate.New(tt.store, replicate.Options{LeaseTTL: -1})
			defer r.Close()
			_, err := r.Add(ctx, db, tt.dbName)
			if !errors.Is(err, replicate.ErrBadName) || !errors.Is(err, replicate.ErrInvalidKey) {
				t.Fatalf("Add err=%v, want ErrBadName and ErrInvalidKey", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "add "+db+": ") || !strings.Contains(msg, tt.why) || strings.Contains(msg, "\n") {
				t.Fatalf("Add err=%q, want one line starting %q and saying %q", msg, "add "+db+": ", tt.why)
			}
			if got := len(r.DBs()); got != 0 {
				t.Fatalf("refused database is replicated")
			}
		})
	}
	// Just within the limit is accepted.
	r := replicate.New(memstore.New(), replicate.Options{})
	defer r.Close()
	if _, err := r.Add(ctx, db, strings.Repeat("n", 1024-43)); err != nil {
		t.Fatalf("Add of the longest name: %v", err)
	}
}
