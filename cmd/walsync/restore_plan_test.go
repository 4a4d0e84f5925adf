package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/superfly/ltx"
)

// TestSplitLTXKey: the name, level and max TXID of an LTX key; any other
// key is not one.
func TestSplitLTXKey(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		for key, want := range map[string]struct {
			name  string
			level int
			max   ltx.TXID
		}{
			"a/0009/0000000000000001-00000000000000ff.ltx":         {"a", 9, 255},
			"t1/app.db/0000/0000000000000005-0000000000000005.ltx": {"t1/app.db", 0, 5},
			`..\evil/0001/0000000000000001-0000000000000002.ltx`:   {`..\evil`, 1, 2}, // not checked here
		} {
			name, level, max, ok := splitLTXKey(key)
			if !ok || name != want.name || level != want.level || max != want.max {
				t.Errorf("splitLTXKey(%q) = %q, %d, %d, %v; want %+v", key, name, level, max, ok, want)
			}
		}
	})
	t.Run("ErrNotLTX", func(t *testing.T) {
		for _, key := range []string{
			"a/0009/0000000000000001-0000000000000001.ltx.tmp",
			"a/000a/0000000000000001-0000000000000001.ltx", // level 10
			"a/009/0000000000000001-0000000000000001.ltx",
			"/0009/0000000000000001-0000000000000001.ltx",
			"0009/0000000000000001-0000000000000001.ltx",
			"a/0009/000000000000000g-0000000000000001.ltx",
			"a/lease/0000000000000001",
			"a",
		} {
			if name, _, _, ok := splitLTXKey(key); ok {
				t.Errorf("splitLTXKey(%q) = %q, want not an LTX key", key, name)
			}
		}
	})
}

// TestPlanRestores: each name maps to its file under the directory, or to
// an error naming why it cannot: never a path outside it.
func TestPlanRestores(t *testing.T) {
	dir := "/srv/out"
	var backups []backup
	names := []string{"tenant1/app.db", "col", "col/inner.db", "x.db", "x.db-wal", "y.db-journal", "/abs.db",
		"a//b.db", "a/./b.db", "../evil", `..\..\evil`, "a/../../b", "bell\a.db", "ok/sp ace.db"}
	for _, n := range names {
		backups = append(backups, backup{name: n})
	}
	want := map[string]string{ // name -> output, or "error: " and a part of it
		"tenant1/app.db": "/srv/out/tenant1/app.db",
		"col/inner.db":   "/srv/out/col/inner.db",
		"x.db":           "/srv/out/x.db",
		"ok/sp ace.db":   "/srv/out/ok/sp ace.db",
		"col":            "error: directory of other databases",
		"x.db-wal":       "error: side file",
		"y.db-journal":   "error: side file",
		"/abs.db":        "error: canonical",
		"a//b.db":        "error: invalid database name",
		"a/./b.db":       "error: invalid database name",
		"../evil":        "error: invalid database name",
		`..\..\evil`:     "error: invalid database name",
		"a/../../b":      "error: invalid database name",
		"bell\a.db":      "error: invalid database name",
	}
	for _, j := range planRestores(dir, backups) {
		w := want[j.name]
		if msg, isErr := strings.CutPrefix(w, "error: "); isErr {
			if j.err == nil || !strings.Contains(j.err.Error(), msg) || j.out != "" {
				t.Errorf("%q: out %q, err %v; want an error about %q", j.name, j.out, j.err, msg)
			}
			continue
		}
		if j.err != nil || j.out != w {
			t.Errorf("%q: out %q, err %v; want %q", j.name, j.out, j.err, w)
		}
		if rel, err := filepath.Rel(dir, j.out); err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("%q: %s is outside %s", j.name, j.out, dir)
		}
	}
}

// TestMkdirBeneath: directories are created 0700, one element at a time;
// a symbolic link or a file on the way is refused and nothing is created
// through it.
func TestMkdirBeneath(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		root := t.TempDir()
		if err := mkdirBeneath(root, "a/b/c"); err != nil {
			t.Fatal(err)
		}
		if err := mkdirBeneath(root, "a/b"); err != nil { // exists: fine
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(root, "a", "b", "c")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("a/b/c: %v, %v; want a directory with mode 0700", fi, err)
		}
	})
	t.Run("ErrSymlink", func(t *testing.T) {
		root, elsewhere := t.TempDir(), t.TempDir()
		if err := os.Symlink(elsewhere, filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
		if err := mkdirBeneath(root, "link/x"); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("err %v, want not a directory", err)
		}
		if _, err := os.Stat(filepath.Join(elsewhere, "x")); !os.IsNotExist(err) {
			t.Errorf("created through the link: %v", err)
		}
	})
	t.Run("ErrFile", func(t *testing.T) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "f"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := mkdirBeneath(root, "f/x"); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("err %v, want not a directory", err)
		}
	})
}
