package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// sqlitePath is the module whose suites run.
const sqlitePath = "github.com/ncruces/go-sqlite3"

// copyDir is a writable copy of the go-sqlite3 module, prepared to run its
// VFS suites against walsync.
type copyDir struct {
	dir  string   // module root of the copy
	lock *os.File // held while the copy is in use
}

// prepare copies the go-sqlite3 version that repo requires into a fresh
// directory under cache (one per repository path, so concurrent runs from
// different work trees do not collide, and a stable path lets the build
// cache serve the next run), then patches it:
//
//   - go.mod requires walsync, replaced by repo;
//   - ncruces' registry returns the VFS registered as "peersuite-default"
//     for the default names "" and "os";
//   - each suite directory gets the hook (internal/peersuite/hook) that
//     registers the walsync VFS, and vfs/tests a file that registers its
//     torn VFSes first, so that they stack under walsync.
//
// With quick, the WAL stress test runs one round of its three (the rounds
// are the same test; one takes about a minute through walsync on 2 cores).
func prepare(repo, cache string, quick bool) (*copyDir, error) {
	version, err := goOutput(repo, "list", "-m", "-f", "{{.Version}}", sqlitePath)
	if err != nil {
		return nil, err
	}
	out, err := goOutput(repo, "mod", "download", "-json", sqlitePath+"@"+version)
	if err != nil {
		return nil, err
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal([]byte(out), &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download %s@%s: no directory in %q", sqlitePath, version, out)
	}

	sum := sha256.Sum256([]byte(repo))
	parent := filepath.Join(cache, hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(parent, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock %s: %w", parent, err)
	}
	c := &copyDir{dir: filepath.Join(parent, "go-sqlite3@"+version), lock: lock}
	if err := c.build(repo, mod.Dir, quick); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *copyDir) close() { c.lock.Close() }

func (c *copyDir) build(repo, src string, quick bool) error {
	if err := os.RemoveAll(c.dir); err != nil {
		return err
	}
	if err := os.CopyFS(c.dir, os.DirFS(src)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// The module cache is read-only; CopyFS keeps the modes.
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		return err
	}

	// go-sqlite3 replaces segmentio/go-hll with a fork the module proxy does
	// not serve; it is only for ext/approx, which no suite uses.
	if _, err := goOutput(c.dir, "mod", "edit",
		"-dropreplace", "github.com/segmentio/go-hll",
		"-require", "github.com/walsync/walsync@v0.0.0",
		"-replace", "github.com/walsync/walsync="+repo); err != nil {
		return err
	}
	if err := c.patch("vfs/registry.go",
		"\tif name == \"\" || name == \"os\" {\n\t\treturn vfsOS{}\n",
		"\tif name == \"\" || name == \"os\" {\n\t\tif v := Find(\"peersuite-default\"); v != nil {\n\t\t\treturn v\n\t\t}\n\t\treturn vfsOS{}\n"); err != nil {
		return err
	}

	if quick {
		if err := c.patch("vfs/tests/wal_stress_test.go", "\t\tmaxRounds = 3\n", "\t\tmaxRounds = 1 // walsync peersuite: quick\n"); err != nil {
			return err
		}
	}

	hook, err := os.ReadFile(filepath.Join(repo, "internal/peersuite/hook/hook.go"))
	if err != nil {
		return err
	}
	for _, s := range []struct{ dir, pkg string }{
		{"vfs/tests/mptest", "mptest"},
		{"vfs/tests/speedtest1", "speedtest1"},
		{"vfs/tests", "tests"},
	} {
		src, err := rewrite(hook,
			"package hook\n", "package "+s.pkg+"\n",
			`"github.com/walsync/walsync/internal/dirstore"`, `"github.com/ncruces/go-sqlite3/internal/walsyncdirstore"`)
		if err != nil {
			return fmt.Errorf("hook: %w", err)
		}
		if err := os.WriteFile(filepath.Join(c.dir, s.dir, "zz_walsync_hook_test.go"), src, 0o600); err != nil {
			return err
		}
	}
	// Init functions run in file name order: the torn VFSes must exist, over
	// the OS VFS, before the hook stacks walsync over them.
	torn := "package tests\n\n// Registered before zz_walsync_hook_test.go stacks walsync over them.\nfunc init() { registerTorn() }\n"
	if err := os.WriteFile(filepath.Join(c.dir, "vfs/tests/zz_walsync_0torn_test.go"), []byte(torn), 0o600); err != nil {
		return err
	}

	// The hook's store: walsync's internal/dirstore, which the copy cannot
	// import from walsync (it is internal there), copied as a package of
	// the copy.
	if err := copyPackage(filepath.Join(repo, "internal/dirstore"), filepath.Join(c.dir, "internal/walsyncdirstore")); err != nil {
		return err
	}
	// dirstore's own internal dependency, copied the same way.
	if err := copyPackage(filepath.Join(repo, "internal/redact"), filepath.Join(c.dir, "internal/walsyncredact")); err != nil {
		return err
	}
	if err := c.patch("internal/walsyncdirstore/url.go",
		`"github.com/walsync/walsync/internal/redact"`, `redact "github.com/ncruces/go-sqlite3/internal/walsyncredact"`); err != nil {
		return err
	}
	if _, err := goOutput(c.dir, "mod", "tidy"); err != nil {
		return err
	}
	return nil
}

// patch replaces the one occurrence of old in the file name of the copy.
func (c *copyDir) patch(name, old, new string) error {
	p := filepath.Join(c.dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if b, err = rewrite(b, old, new); err != nil {
		return fmt.Errorf("patch %s: %w", name, err)
	}
	return os.WriteFile(p, b, 0o600)
}

// rewrite replaces each pair (old, new) of pairs in b; each old must occur
// exactly once.
func rewrite(b []byte, pairs ...string) ([]byte, error) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if n := bytes.Count(b, []byte(pairs[i])); n != 1 {
			return nil, fmt.Errorf("%q occurs %d times, want once", pairs[i], n)
		}
		b = bytes.Replace(b, []byte(pairs[i]), []byte(pairs[i+1]), 1)
	}
	return b, nil
}

// copyPackage copies the non-test Go files of a package directory.
func copyPackage(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	n := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("copy %s: no Go files", src)
	}
	return nil
}

// goOutput runs the go command in dir and returns its standard output.
func goOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("go %s (in %s): %w", strings.Join(args, " "), dir, err)
	}
	return strings.TrimSpace(string(out)), nil
}
