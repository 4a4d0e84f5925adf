package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestUsageErrors: a missing argument is named, an extra one counted
// (never echoed), and the usage line follows, with where the flags are.
func TestUsageErrors(t *testing.T) {
	target := "file://" + t.TempDir()
	for _, c := range []struct {
		name      string
		args      []string
		wantError string
		wantUsage string
	}{
		{"RestoreNoName", []string{"restore", "-b", target, "-o", "out.db"}, "walsync: restore: missing NAME (the database's name in the target",
			"usage: walsync restore NAME -b URL -o OUT [flags]"},
		{"RestoreTwoNames", []string{"restore", "a", "b", "-b", target}, "walsync: restore: takes NAME, got 2 arguments",
			"usage: walsync restore NAME -b URL -o OUT [flags]"},
		{"SnapshotNoDB", []string{"snapshot", "-b", target}, "walsync: snapshot: missing DB (the path of the database file)",
			"usage: walsync snapshot DB -b URL [flags]"},
		{"ListArgument", []string{"list", "s3://secret-bucket/x", "-b", target}, "walsync: list: takes no arguments, got 1 argument",
			"usage: walsync list -b URL [flags]"},
		{"VersionArgument", []string{"version", "x"}, "walsync: version: takes no arguments, got 1 argument",
			"usage: walsync version [flags]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 3 {
				t.Fatalf("stderr has %d lines, want 3 (error, usage, help):\n%s", len(lines), r.stderr)
			}
			if !strings.HasPrefix(lines[0], c.wantError) {
				t.Errorf("error line %q, want it to start with %q", lines[0], c.wantError)
			}
			if got, want := lines[1], c.wantUsage; got != want {
				t.Errorf("usage line %q, want %q", got, want)
			}
			cmdPath := strings.Join(strings.Fields(c.wantUsage)[1:3], " ")
			if got, want := lines[2], "run '"+cmdPath+" --help' for the flags"; got != want {
				t.Errorf("help line %q, want %q", got, want)
			}
			if strings.Contains(r.stderr, "secret-bucket") {
				t.Errorf("an extra argument is echoed:\n%s", r.stderr)
			}
		})
	}
}

// TestNearestNames: a name that is the wanted one with directories added
// or removed in front comes first, then names within a small edit
// distance, ignoring case; unrelated names never; at most n.
func TestNearestNames(t *testing.T) {
	names := []string{"tenant1/app.db", "tenant2/app.db", "tenant10/app.db", "billing.db", "Billing-old.db", "other/x.db"}
	for _, c := range []struct {
		name string
		want string
		n    int
		out  []string
	}{
		{"AbsolutePath", "var/lib/app/tenant1/app.db", 5, []string{"tenant1/app.db"}},
		{"FileName", "app.db", 5, []string{"tenant1/app.db", "tenant10/app.db", "tenant2/app.db"}},
		{"Typo", "tenant3/app.db", 5, []string{"tenant1/app.db", "tenant2/app.db", "tenant10/app.db"}},
		{"Case", "BILLING.DB", 5, []string{"billing.db"}},
		{"Closest", "billing-ol.db", 5, []string{"Billing-old.db", "billing.db"}},
		{"AtMostN", "app.db", 2, []string{"tenant1/app.db", "tenant10/app.db"}},
		{"Unrelated", "zzz", 5, []string{}},
		{"VeryLong", strings.Repeat("x", 1000), 5, []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := nearestNames(c.want, names, c.n); !slices.Equal(got, c.out) {
				t.Fatalf("nearestNames(%q)=%q, want %q", c.want, got, c.out)
			}
		})
	}
}

// TestBoundedDistance compares the banded distance with a plain
// Levenshtein distance on random strings over a small alphabet.
func TestBoundedDistance(t *testing.T) {
	full := func(a, b []rune) int {
		prev := make([]int, len(b)+1)
		for j := range prev {
			prev[j] = j
		}
		for i := 1; i <= len(a); i++ {
			cur := make([]int, len(b)+1)
			cur[0] = i
			for j := 1; j <= len(b); j++ {
				cost := 1
				if a[i-1] == b[j-1] {
					cost = 0
				}
				cur[j] = min(prev[j-1]+cost, prev[j]+1, cur[j-1]+1)
			}
			prev = cur
		}
		return prev[len(b)]
	}
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() []rune {
		r := make([]rune, rng.IntN(12))
		for i := range r {
			r[i] = rune("abc"[rng.IntN(3)])
		}
		return r
	}
	for range 20000 {
		a, b, k := word(), word(), rng.IntN(7)
		if got, want := boundedDistance(a, b, k), min(full(a, b), k+1); got != want {
			t.Fatalf("boundedDistance(%q, %q, %d)=%d, want %d", string(a), string(b), k, got, want)
		}
	}
}

// TestRestoreSuggestsNames: "no backup found" names the nearest databases
// of the target on the same line, or says none is close.
func TestRestoreSuggestsNames(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	target := "file://" + filepath.Join(dir, "target")
	for _, name := range []string{"tenant1/app.db", "tenant2/app.db"} {
		mustRun(t, "snapshot", db, "-b", target, "--name", name)
	}
	out := filepath.Join(dir, "out.db")
	for _, c := range []struct {
		name string
		arg  string
		want string
	}{
		{"Path", "/var/lib/app/tenant1/app.db", `no backup found; nearest names in the target: "tenant1/app.db"`},
		{"Typo", "tenant3/app.db", `no backup found; nearest names in the target: "tenant1/app.db", "tenant2/app.db"`},
		{"NoneClose", "billing.db", "no backup found; no name in the target is close (it holds 2 databases; `walsync list -b URL` lists them)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, "restore", c.arg, "-b", target, "-o", out)
			if r.code != exitNoBackup {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, exitNoBackup, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasSuffix(last, c.want) {
				t.Fatalf("error %q, want it to end with %q", last, c.want)
			}
			if !strings.HasPrefix(last, fmt.Sprintf("walsync: restore %s:", strings.TrimPrefix(c.arg, "/"))) {
				t.Errorf("error %q does not name the database asked for", last)
			}
		})
	}
}
