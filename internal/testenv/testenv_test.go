package testenv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestS3(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	endpoint2, bucket2 := testenv.S3(t)
	if endpoint != endpoint2 {
		t.Fatalf("second S3 call started another server: %s, %s", endpoint, endpoint2)
	}
	if bucket == bucket2 {
		t.Fatalf("S3 returned bucket %s twice", bucket)
	}
	for k, want := range map[string]string{
		"AWS_ACCESS_KEY_ID":         testenv.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":     testenv.SecretAccessKey,
		"AWS_REGION":                testenv.Region,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		if got := os.Getenv(k); got != want {
			t.Fatalf("%s=%q, want %q", k, got, want)
		}
	}
}

func TestBucket_Parallel(t *testing.T) {
	for _, name := range []string{"A", "B", "C"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if endpoint, bucket := testenv.Bucket(t); endpoint == "" || bucket == "" {
				t.Fatalf("Bucket()=%q, %q", endpoint, bucket)
			}
		})
	}
}

func TestSQLite3(t *testing.T) {
	if p := testenv.SQLite3(t); !filepath.IsAbs(p) {
		t.Fatalf("SQLite3()=%q, want an absolute path", p)
	}
}

func TestLitestream_Env(t *testing.T) {
	// The cached Litestream may not be installed; the lookup through the
	// environment variable is what is tested here.
	p := filepath.Join(t.TempDir(), "litestream")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WALSYNC_LITESTREAM", p)
	if got := testenv.Litestream(t); got != p {
		t.Fatalf("Litestream()=%q, want %q", got, p)
	}
}

// TestRequireIntegration runs TestChildMissingServer in a child process
// whose versitygw is missing, with and without WALSYNC_REQUIRE_INTEGRATION.
func TestRequireIntegration(t *testing.T) {
	for _, tt := range []struct {
		require, want string
		fail          bool
	}{
		{"", "--- SKIP: TestChildMissingServer", false},
		{"0", "--- SKIP: TestChildMissingServer", false},
		{"1", "--- FAIL: TestChildMissingServer", true},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildMissingServer$", "-test.v")
		cmd.Env = append(os.Environ(),
			"WALSYNC_TESTENV_CHILD=1",
			testenv.RequireEnv+"="+tt.require,
			"WALSYNC_VERSITYGW="+filepath.Join(t.TempDir(), "missing"))
		out, err := cmd.CombinedOutput()
		if got := err != nil; got != tt.fail {
			t.Fatalf("%s=%q: child failed=%v, want %v; output:\n%s", testenv.RequireEnv, tt.require, got, tt.fail, out)
		}
		if !strings.Contains(string(out), tt.want) {
			t.Fatalf("%s=%q: child output lacks %q:\n%s", testenv.RequireEnv, tt.require, tt.want, out)
		}
	}
}

// TestChildMissingServer is run by TestRequireIntegration, and passes at
// once otherwise.
func TestChildMissingServer(t *testing.T) {
	if os.Getenv("WALSYNC_TESTENV_CHILD") != "1" {
		return
	}
	testenv.S3(t)
	t.Fatal("S3 returned without a server")
}
