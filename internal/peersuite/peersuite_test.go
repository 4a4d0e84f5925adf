package main

import (
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		got, err := rewrite([]byte("package hook\nimport \"a\"\n"), "package hook\n", "package tests\n", `"a"`, `"b"`)
		if err != nil {
			t.Fatal(err)
		}
		if want := "package tests\nimport \"b\"\n"; string(got) != want {
			t.Errorf("rewrite = %q, want %q", got, want)
		}
	})
	t.Run("ErrMissing", func(t *testing.T) {
		if _, err := rewrite([]byte("package hook\n"), "maxRounds = 3", "maxRounds = 1"); err == nil {
			t.Error("rewrite of a missing string succeeded: an upstream change would go unnoticed")
		}
	})
	t.Run("ErrTwice", func(t *testing.T) {
		if _, err := rewrite([]byte("x x"), "x", "y"); err == nil {
			t.Error("rewrite of a string found twice succeeded")
		}
	})
}

func TestParse(t *testing.T) {
	log := strings.Join([]string{
		"=== RUN   Test_mptest",
		"    --- PASS: Test_mptest/multiwrite01_wal (1.00s)",
		"    --- SKIP: Test_mptest/config02 (0.00s)",
		"--- FAIL: Test_mptest (2.00s)",
		`walsync-peer: time=x level=WARN msg="database deleted, replication stopped"`,
		"    env.go:48:        TOTAL.......................................................    1.229s",
		"FAIL\tgithub.com/ncruces/go-sqlite3/vfs/tests/mptest\t2.1s",
	}, "\n")
	r := parse([]byte(log))
	if r.passed != 1 || r.failed != 1 || len(r.skips) != 1 || r.warnings != 1 || !r.total {
		t.Errorf("parse = %+v, want 1 passed, 1 failed, 1 skip, 1 warning, a TOTAL", r)
	}
	if got, want := r.skips[0], "Test_mptest/config02"; got != want {
		t.Errorf("skip = %q, want %q", got, want)
	}
}

func TestCheckParams(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"tmp/Test_mptestmultiwrite01_wal1/001/test.db", ""},
		{"tmp/Test_mptestcrash01_xts_wal2/001/test.db", "vfs=xts&hexkey=" + mptestKey},
		{"tmp/TestEncryptedWALTornReadsadiantum3/001/torn.db", "vfs=adiantum&hexkey=" + tornKey},
	} {
		if got := checkParams(tt.name); got != tt.want {
			t.Errorf("checkParams(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
