package replicate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/internal/memstore"
)

// okBackup returns a store holding the corpus's valid backup of "db".
func okBackup(t *testing.T) *memstore.Store {
	t.Helper()
	store := memstore.New()
	for k, v := range hostileCases(t)[0].objects {
		if err := store.Put(t.Context(), k, bytes.NewReader(v), int64(len(v)), nil); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// TestRestoreRemovesStaleTemps: the temporary files a SIGKILLed restore
// left (and their -wal/-shm) are removed by the next restore into the
// directory; a fresh one, one a running restore holds, and files that only
// look similar are kept.
func TestRestoreRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * staleTempAge)
	mk := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk(".app.db.walsync-restore-123", old)
	mk(".app.db.walsync-restore-123-wal", old)
	mk(".other.db.walsync-restore-9", old)
	mk(".orphan.db.walsync-restore-7-shm", old)
	kept := []string{
		mk(".app.db.walsync-restore-456", time.Now()), // fresh
		mk(".app.db.walsync-restore-abc", old),        // not our digits
		mk("app.db.walsync-restore-1", old),           // not hidden
		mk(".app.db.walsync-restore-", old),           // no digits
		mk(".app.db.walsync-restore-789", old),        // locked below
		mk(".app.db.walsync-restore-789-wal", old),    // its -wal
		mk("notes.txt", old),
	}
	held, err := os.Open(filepath.Join(dir, ".app.db.walsync-restore-789"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "app.db")
	if _, err := Restore(t.Context(), okBackup(t), "db", out, RestoreOptions{Check: IntegrityNone}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	want := []string{"app.db"}
	for _, p := range kept {
		want = append(want, filepath.Base(p))
	}
	if g, w := fmt.Sprint(sorted(got)), fmt.Sprint(sorted(want)); g != w {
		t.Errorf("directory holds %s, want %s", g, w)
	}
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// TestRestoreForceRefusesOpenOutput: --force never replaces an output that
// a process has open, even one that holds no SQLite lock (a connection
// that has not read yet), and the error names the file and the process.
func TestRestoreForceRefusesOpenOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "app.db")
	for _, open := range []string{out, out + "-wal"} {
		t.Run(filepath.Base(open), func(t *testing.T) {
			if err := os.WriteFile(out, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(open, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = Restore(t.Context(), okBackup(t), "db", out, RestoreOptions{Force: true, Check: IntegrityNone})
			if !errors.Is(err, ErrOutputInUse) {
				t.Fatalf("Restore err=%v, want ErrOutputInUse", err)
			}
			if msg, want := err.Error(), fmt.Sprintf("%s is open by process %d", open, os.Getpid()); !strings.Contains(msg, want) {
				t.Errorf("error %q, want it to say %q", msg, want)
			}
			if b, _ := os.ReadFile(out); string(b) != "keep me" {
				t.Errorf("output replaced")
			}
		})
	}
}
