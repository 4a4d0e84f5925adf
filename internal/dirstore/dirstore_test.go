package dirstore_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/internal/storagetest"
	"github.com/walsync/walsync/replicate"
)

// open returns a Store on a new temporary directory.
func open(t *testing.T) *dirstore.Store {
	t.Helper()
	s, err := dirstore.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storagetest.Run(t,
		func(t *testing.T) replicate.Storage { return open(t) },
		storagetest.WithCorrupter(func(t *testing.T, s replicate.Storage, key string) {
			name := filepath.Join(s.(*dirstore.Store).Dir(), filepath.FromSlash(key))
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(name, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}))
}

func TestOpen(t *testing.T) {
	t.Run("CreatesDir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		s, err := dirstore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("Open did not create %s: %v", dir, err)
		}
	})
	t.Run("ErrEmpty", func(t *testing.T) {
		if _, err := dirstore.Open(""); err == nil {
			t.Fatal("Open(\"\") succeeded")
		}
	})
}

func TestOpenExisting(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		s, err := dirstore.OpenExisting(t.TempDir())
		if err != nil {
			t.Fatalf("OpenExisting: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrNoDir", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "typo")
		dir := filepath.Join(parent, "dir")
		_, err := dirstore.OpenExisting(dir)
		if !errors.Is(err, dirstore.ErrNoDir) {
			t.Fatalf("OpenExisting(missing) err=%v, want ErrNoDir", err)
		}
		if !strings.Contains(err.Error(), dir) {
			t.Fatalf("err=%q does not name %s", err, dir)
		}
		if _, err := os.Lstat(parent); err == nil {
			t.Fatalf("OpenExisting created %s", parent)
		}
	})
}

func put(t *testing.T, s *dirstore.Store, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func TestStore_ErrInvalidKey(t *testing.T) {
	s := open(t)
	for _, key := range []string{
		"", "/abs", "a/../b", "..", ".", "./a", "a/.", "a//b", "a/", "a\\b", "..\\x",
		"a\x00b", "\xff", "a/line\nbreak", "a/" + strings.Repeat("x", 256) + "/b",
	} {
		ctx := t.Context()
		data := strings.NewReader("x")
		if err := s.Put(ctx, key, data, 1, nil); !errors.Is(err, dirstore.ErrInvalidKey) {
			t.Fatalf("Put(%q) err=%v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, dirstore.ErrInvalidKey) {
			t.Fatalf("Get(%q) err=%v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Head(ctx, key); !errors.Is(err, dirstore.ErrInvalidKey) {
			t.Fatalf("Head(%q) err=%v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, "ok", key); !errors.Is(err, dirstore.ErrInvalidKey) {
			t.Fatalf("Delete(%q) err=%v, want ErrInvalidKey", key, err)
		}
	}
	entries, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("invalid keys touched the disk: %s", entries[0].Name())
	}
}

func TestStore_ErrInvalidMeta(t *testing.T) {
	s := open(t)
	for _, meta := range []map[string]string{
		{"": "v"}, {"Upper": "v"}, {"sp ace": "v"}, {"k": "new\nline"}, {"k": "ünicode"},
	} {
		err := s.Put(t.Context(), "k", strings.NewReader("x"), 1, meta)
		if !errors.Is(err, dirstore.ErrInvalidMeta) {
			t.Fatalf("Put(meta=%q) err=%v, want ErrInvalidMeta", meta, err)
		}
	}
}

// TestStore_ListSkipsInvalidNames: List yields files whose names are valid
// key elements, dot-files included, and skips the others and symbolic
// links.
func TestStore_ListSkipsInvalidNames(t *testing.T) {
	s := open(t)
	put(t, s, "db/a", "a")
	for _, name := range []string{".local", "db/.hidden", "back\\slash", "new\nline"} {
		if err := os.WriteFile(filepath.Join(s.Dir(), name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(s.Dir(), "db", "link")); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for info, err := range s.List(t.Context(), "", "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if got, want := strings.Join(keys, ","), ".local,db/.hidden,db/a"; got != want {
		t.Fatalf("List=%s, want %s", got, want)
	}
}

// TestStore_DotDirectory: a database under a dot-directory keeps the name
// its path gives it; before, every upload failed with "path element
// .local starts with a dot".
func TestStore_DotDirectory(t *testing.T) {
	s := open(t)
	const key = "home/u/.local/share/app.db/0000/0000000000000001-0000000000000001.ltx"
	if err := s.CheckKey(key); err != nil {
		t.Fatalf("CheckKey(%q): %v", key, err)
	}
	put(t, s, key, "segment")
	if _, err := os.Stat(filepath.Join(s.Dir(), filepath.FromSlash(key))); err != nil {
		t.Fatalf("object not stored at its path: %v", err)
	}
}

func TestStore_FileWithoutSidecar(t *testing.T) {
	s := open(t)
	dir := filepath.Join(s.Dir(), "manual")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("by hand"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(t.Context(), "manual/file", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("Get without metadata: %v", err)
	}
	if got, want := string(b), "by hand"; got != want {
		t.Fatalf("Get=%q, want %q", got, want)
	}
	info, err := s.Head(t.Context(), "manual/file")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(info.Metadata); got != 0 {
		t.Fatalf("Head.Metadata=%q, want none", info.Metadata)
	}
	put(t, s, "manual/file", "by hand")
	if err := s.Put(t.Context(), "manual/file", strings.NewReader("by HAND"), 7, nil); !errors.Is(err, replicate.ErrExists) {
		t.Fatalf("Put of other content err=%v, want ErrExists", err)
	}
}

func TestStore_KeyIsDirectory(t *testing.T) {
	s := open(t)
	put(t, s, "a/b", "x")
	if _, err := s.Head(t.Context(), "a"); !errors.Is(err, replicate.ErrNotExist) {
		t.Fatalf("Head of a directory err=%v, want ErrNotExist", err)
	}
	if err := s.Put(t.Context(), "a", strings.NewReader("x"), 1, nil); !errors.Is(err, replicate.ErrExists) {
		t.Fatalf("Put onto a directory err=%v, want ErrExists", err)
	}
	if err := s.Put(t.Context(), "a/b/c", strings.NewReader("x"), 1, nil); err == nil {
		t.Fatalf("Put below a file succeeded")
	}
	if _, err := s.Get(t.Context(), "a/b/c", 0, -1); !errors.Is(err, replicate.ErrNotExist) {
		t.Fatalf("Get below a file err=%v, want ErrNotExist", err)
	}
	if err := s.Delete(t.Context(), "a", "a/b/c"); err != nil {
		t.Fatalf("Delete of a directory name: %v", err)
	}
	if _, err := s.Head(t.Context(), "a/b"); err != nil {
		t.Fatalf("Delete of a directory name removed its content: %v", err)
	}
}

func TestStore_DeletePrunesDirectories(t *testing.T) {
	s := open(t)
	put(t, s, "x/y/z", "1")
	put(t, s, "x/keep", "2")
	if err := s.Delete(t.Context(), "x/y/z"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"x/y"} {
		if _, err := os.Stat(filepath.Join(s.Dir(), dir)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Delete left directory %s: %v", dir, err)
		}
	}
	for _, dir := range []string{"x"} {
		if _, err := os.Stat(filepath.Join(s.Dir(), dir)); err != nil {
			t.Fatalf("Delete removed non-empty directory %s: %v", dir, err)
		}
	}
}

func TestStore_SymlinkEscape(t *testing.T) {
	s := open(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Dir(), "evil")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "evil/secret", 0, -1); err == nil {
		t.Fatal("Get through a symlink out of the store succeeded")
	}
	if err := s.Put(t.Context(), "evil/new", strings.NewReader("x"), 1, nil); err == nil {
		t.Fatal("Put through a symlink out of the store succeeded")
	}
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(entries), 1; got != want {
		t.Fatalf("directory outside the store has %d entries, want %d", got, want)
	}
}

func TestStore_NoTempFilesLeft(t *testing.T) {
	s := open(t)
	put(t, s, "d/k", "same")
	put(t, s, "d/k", "same")
	if err := s.Put(t.Context(), "d/k", strings.NewReader("diff"), 4, nil); err == nil {
		t.Fatal("Put of other content succeeded")
	}
	if err := s.Put(t.Context(), "d/short", bytes.NewReader(nil), 4, nil); err == nil {
		t.Fatal("Put from a short reader succeeded")
	}
	err := filepath.WalkDir(s.Dir(), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
