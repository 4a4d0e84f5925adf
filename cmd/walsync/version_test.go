package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

// TestVersionLine: the version printed is the linked one, else the
// module's, else "(devel)"; the commit, its time and "modified" follow
// when the build info has them.
func TestVersionLine(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	tail := " (SQLite 3.99.0, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	for _, c := range []struct {
		name   string
		bi     *debug.BuildInfo
		linked string
		want   string
	}{
		{"NoBuildInfo", nil, "", "walsync (devel)"},
		{"Devel", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "", "walsync (devel)"},
		{"Module", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "", "walsync v1.2.3"},
		{"LinkedWins", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v9.0.0", "walsync v9.0.0"},
		{"Commit", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(
			"vcs", "git", "vcs.revision", rev, "vcs.time", "2026-12-02T10:50:00Z", "vcs.modified", "false")},
			"", "walsync (devel) commit " + rev + " 2026-12-02T10:50:00Z"},
		{"Modified", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202105000-0123456789ab+dirty"}, Settings: vcs(
			"vcs.revision", rev, "vcs.time", "2026-12-02T10:50:00Z", "vcs.modified", "true")},
			"", "walsync v0.0.0-20261202105000-0123456789ab+dirty commit " + rev + " 2026-12-02T10:50:00Z modified"},
		{"RevisionOnly", &debug.BuildInfo{Settings: vcs("vcs.revision", rev)}, "", "walsync (devel) commit " + rev},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got, want := versionLine(c.bi, c.linked, "3.99.0"), c.want+tail; got != want {
				t.Fatalf("versionLine=%q, want %q", got, want)
			}
		})
	}
}

// TestVersionBuildInfo builds walsync as a user would, inside a git
// checkout (a copy of this module's files in a new repository, with one
// commit of a known time), and runs `walsync version`: it must name that
// commit and its time, then, once a file is changed and with a version
// linked in, that version and "modified".
func TestVersionBuildInfo(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		testenv.RequireIntegration(t, "git is not in PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	runIn := func(dir string, env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v in %s: %v: %s", name, args, dir, err, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	// The working tree's files, tracked or new, as they are now.
	files := runIn(root, nil, git, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for f := range strings.SplitSeq(strings.TrimRight(files, "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		} else if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const when = "2026-01-02T03:04:05Z"
	gitEnv := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_AUTHOR_DATE=" + when, "GIT_COMMITTER_DATE=" + when}
	runIn(src, gitEnv, git, "init", "-q")
	runIn(src, gitEnv, git, "add", "-A")
	runIn(src, gitEnv, git, "commit", "-q", "-m", "test")
	rev := runIn(src, nil, git, "rev-parse", "HEAD")

	bin := filepath.Join(t.TempDir(), "walsync")
	build := func(ldflags string) string {
		t.Helper()
		// -buildvcs=true on the command line wins over a GOFLAGS that
		// turns stamping off (and fails if it cannot stamp).
		// CGO_ENABLED=0 and -trimpath as in docs/packaging/docker/Dockerfile,
		// so that TestDockerfile's build shares the build cache.
		runIn(src, []string{"CGO_ENABLED=0"}, "go", "build", "-buildvcs=true", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/walsync")
		return runIn(src, nil, bin, "version")
	}
	out := build("")
	if want := "commit " + rev + " " + when + " ("; !strings.Contains(out, want) {
		t.Errorf("clean checkout: version %q does not hold %q", out, want)
	}
	if strings.Contains(out, "modified") {
		t.Errorf("clean checkout: version %q says modified", out)
	}

	f, err := os.OpenFile(filepath.Join(src, "README.md"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\nchanged\n")
	f.Close()
	out = build("-X main.version=v9.9.9-test")
	if want := "walsync v9.9.9-test commit " + rev + " " + when + " modified ("; !strings.HasPrefix(out, want) {
		t.Errorf("changed checkout: version %q, want it to start with %q", out, want)
	}
}
