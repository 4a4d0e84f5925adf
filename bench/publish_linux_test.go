//go:build linux

package bench

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPublishWatcher(t *testing.T) {
	root := filepath.Join(t.TempDir(), "target")
	w, err := startPublishWatcher(root)
	if err != nil {
		t.Fatal(err)
	}
	write := func(rel string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// walsync's layout, created by name; Litestream's, renamed into place.
	write("db1.db/0009/0000000000000001-0000000000000001.ltx")
	write("db1.db/0000/0000000000000002-0000000000000002.ltx")
	write("db2.db/ltx/0/0000000000000001-0000000000000001.ltx.tmp")
	if err := os.Rename(filepath.Join(root, "db2.db/ltx/0/0000000000000001-0000000000000001.ltx.tmp"),
		filepath.Join(root, "db2.db/ltx/0/0000000000000001-0000000000000001.ltx")); err != nil {
		t.Fatal(err)
	}
	write("db2.db/ltx/0/0000000000000002-0000000000000002.ltx.tmp") // never renamed
	write(".meta/db1.db/0000/0000000000000002-0000000000000002.ltx")
	seen, err := w.stop()
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(seen))
	want := []string{
		"db1.db/0000/0000000000000002-0000000000000002.ltx",
		"db1.db/0009/0000000000000001-0000000000000001.ltx",
		"db2.db/ltx/0/0000000000000001-0000000000000001.ltx",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("seen %v, want %v", got, want)
	}
}
