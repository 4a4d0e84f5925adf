// Package testenv finds and starts what walsync's integration tests need: an
// S3-compatible server (versitygw) on 127.0.0.1, the sqlite3 CLI and a
// Litestream binary.
//
// A package whose tests use [S3] or [Bucket] runs them through [Main]:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestUpload(t *testing.T) {
//		endpoint, bucket := testenv.S3(t)
//		...
//	}
//
// A missing tool skips the test, unless the environment variable
// WALSYNC_REQUIRE_INTEGRATION is "1" (as in CI), which makes it fail: an
// integration test must not pass by not running. See [RequireIntegration].
//
// Tools are found through an environment variable naming the binary, or in
// $HOME/.cache/walsync/tools/<name>-<version>/, where the CI script installs
// them.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv is the environment variable that, set to "1", turns every skip
// for a missing integration prerequisite into a failure.
const RequireEnv = "WALSYNC_REQUIRE_INTEGRATION"

// Tool versions the tests are written against; the CI script installs these.
const (
	VersitygwVersion  = "v1.8.0"
	LitestreamVersion = "v0.5.18"
)

// RequireIntegration ends the test because an integration prerequisite,
// described by reason, is missing: it skips the test, or fails it if
// [RequireEnv] is "1".
func RequireIntegration(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1: integration tests must run)", reason, RequireEnv)
	}
	t.Skipf("%s (set %s=1 to fail instead)", reason, RequireEnv)
}

// SQLite3 returns the path of the sqlite3 command-line shell: the one named
// by WALSYNC_SQLITE3, else the one in PATH.
func SQLite3(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WALSYNC_SQLITE3"); p != "" {
		return executable(t, p, "WALSYNC_SQLITE3")
	}
	p, err := exec.LookPath("sqlite3")
	if err != nil {
		RequireIntegration(t, "sqlite3 is not in PATH (set WALSYNC_SQLITE3 to its path)")
	}
	return p
}

// Litestream returns the path of the Litestream binary: the one named by
// WALSYNC_LITESTREAM, else the cached one of [LitestreamVersion].
func Litestream(t testing.TB) string {
	t.Helper()
	return tool(t, "WALSYNC_LITESTREAM", "litestream", LitestreamVersion)
}

// tool returns the binary named by the environment variable env, else
// $HOME/.cache/walsync/tools/<name>-<version>/<name>.
func tool(t testing.TB, env, name, version string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return executable(t, p, env)
	}
	p, err := toolPath(name, version)
	if err != nil {
		RequireIntegration(t, fmt.Sprintf("%s %s: %v (set %s to its path)", name, version, err, env))
	}
	return executable(t, p, env)
}

// toolPath returns where the CI script installs a tool.
func toolPath(name, version string) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "walsync", "tools", name+"-"+version, name), nil
}

// executable returns p if it is an executable regular file, and otherwise
// ends the test through RequireIntegration.
func executable(t testing.TB, p, env string) string {
	t.Helper()
	if err := checkExecutable(p); err != nil {
		RequireIntegration(t, fmt.Sprintf("%v (set %s to its path)", err, env))
	}
	return p
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New(p + " is not an executable file")
	}
	return nil
}
