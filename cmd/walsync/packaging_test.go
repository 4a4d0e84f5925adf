package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mattn/go-shellwords"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/walsync/walsync/internal/testenv"
)

// repoFile returns the path of a file of the repository, from this
// package's directory.
func repoFile(rel string) string { return filepath.Join("..", "..", filepath.FromSlash(rel)) }

// parseWatchArgs parses a `walsync watch` command line (without
// "walsync watch") with watch's flags and the global ones, and checks that
// the flags exist and their values are valid.
func parseWatchArgs(t *testing.T, args []string) *watchOptions {
	t.Helper()
	o := &watchOptions{}
	fs := pflag.NewFlagSet("watch", pflag.ContinueOnError)
	o.AddFlags(fs)
	fs.AddFlagSet(newRootCmd().PersistentFlags()) // --log-format and the other global flags
	if err := fs.Parse(args); err != nil {
		t.Fatalf("watch %q: %v", args, err)
	}
	dbs, err := o.takeExecArgs(fs.Args(), fs.ArgsLenAtDash())
	if err != nil {
		t.Fatalf("watch %q: %v", args, err)
	}
	if err := o.validate(dbs); err != nil {
		t.Fatalf("watch %q: %v", args, err)
	}
	return o
}

// unitFile is a systemd unit: section → key → values, in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// TestSystemdUnit checks docs/packaging/systemd/walsync.service: its sandboxing
// directives, that ExecStart is a valid watch command line whose database
// directory and spool directory are writable, `systemd-analyze verify`
// without a warning, and an exposure level of at most 2.0 ("OK") from
// `systemd-analyze security --offline`.
func TestSystemdUnit(t *testing.T) {
	path := repoFile("docs/packaging/systemd/walsync.service")
	u := parseUnit(t, path)
	svc := u["Service"]
	for k, want := range map[string]string{
		"ProtectSystem":          "strict",
		"ProtectHome":            "yes",
		"PrivateTmp":             "yes",
		"PrivateDevices":         "yes",
		"NoNewPrivileges":        "yes",
		"CapabilityBoundingSet":  "",
		"AmbientCapabilities":    "",
		"RestrictSUIDSGID":       "yes",
		"MemoryDenyWriteExecute": "yes",
		"KillMode":               "mixed",
		"CacheDirectory":         "walsync",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s=%q, want %q", k, got, want)
		}
	}
	if user := svc["User"]; len(user) != 1 || user[0] == "root" || user[0] == "0" {
		t.Errorf("[Service] User=%q, want one user that is not root", user)
	}
	execStart := svc["ExecStart"]
	if len(execStart) != 1 {
		t.Fatalf("[Service] ExecStart=%q, want one", execStart)
	}
	argv, err := shellwords.Parse(execStart[0])
	if err != nil || len(argv) < 2 || argv[0] != "/usr/local/bin/walsync" || argv[1] != "watch" {
		t.Fatalf("ExecStart %q: want /usr/local/bin/walsync watch ... (%v)", execStart[0], err)
	}
	o := parseWatchArgs(t, argv[2:])
	if !pathListed(svc["ReadWritePaths"], o.dir) {
		t.Errorf("ReadWritePaths=%q does not hold the watched directory %q", svc["ReadWritePaths"], o.dir)
	}
	if o.spoolDir != "${CACHE_DIRECTORY}" {
		t.Errorf("--spool-dir %q, want ${CACHE_DIRECTORY} (CacheDirectory= is writable)", o.spoolDir)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.RequireIntegration(t, "systemd-analyze is not in PATH (Debian package systemd)")
	}
	// The unit as installed, but starting the walsync under test: verify
	// checks that ExecStart's program exists and is executable.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "walsync.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/walsync"), []byte(binPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=20", "--no-pager", unit).CombinedOutput()
	overall := regexp.MustCompile(`Overall exposure level for walsync.service: .*`).Find(out)
	if err != nil {
		t.Errorf("systemd-analyze security: %v (want an exposure level of at most 2.0):\n%s", err, out)
	}
	t.Logf("systemd-analyze security: %s", overall)
}

// pathListed reports whether v is one of the paths of a directive's
// values (each may list several; a leading "-" marks an optional one).
func pathListed(values []string, v string) bool {
	for _, line := range values {
		for p := range strings.FieldsSeq(line) {
			if strings.TrimPrefix(p, "-") == v {
				return true
			}
		}
	}
	return false
}

// instruction is one Dockerfile instruction.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions, joining
// continuation lines and dropping comments.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestDockerfile lints docs/packaging/docker/Dockerfile (no Docker engine runs
// here: docs/deploy.md says how to build it by hand): a multi-stage build
// whose Go version is go.mod's, images pinned to a tag, a final stage on
// distroless static as a non-root user with an exec-form ENTRYPOINT; then
// it runs the Dockerfile's own go build line and checks the binary is
// static (no interpreter, no shared library) and prints the version given
// as the VERSION build argument.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, repoFile("docs/packaging/docker/Dockerfile"))
	args := map[string]string{} // global ARGs, before the first FROM
	var stages [][]instruction
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			stages = append(stages, []instruction{in})
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case len(stages) == 0:
			t.Fatalf("%s before the first FROM", in.cmd)
		default:
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
		if in.cmd == "ADD" {
			t.Errorf("ADD %s: use COPY", in.args)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(stages))
	}
	gomod, err := os.ReadFile(repoFile("go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goDirective := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goDirective == nil || args["GO_VERSION"] != string(goDirective[1]) {
		t.Errorf("ARG GO_VERSION=%s, want go.mod's %s", args["GO_VERSION"], goDirective)
	}
	for _, st := range stages {
		image, _, _ := strings.Cut(os.Expand(st[0].args, func(k string) string { return args[k] }), " ")
		if !strings.Contains(image, ":") || strings.HasSuffix(image, ":latest") {
			t.Errorf("FROM %s: pin a tag", st[0].args)
		}
	}
	final := stages[len(stages)-1]
	if img := final[0].args; !strings.HasPrefix(img, "gcr.io/distroless/static") && img != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch", img)
	}
	for _, st := range stages[1:] {
		user, entry, copied := "", "", false
		for _, in := range st {
			switch in.cmd {
			case "USER":
				user = in.args
			case "ENTRYPOINT":
				entry = in.args
			case "COPY":
				copied = copied || strings.HasPrefix(in.args, "--from=build ")
			}
		}
		if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
			t.Errorf("stage %q: USER %q, want a non-root user", st[0].args, user)
		}
		if !strings.HasPrefix(entry, `["`) {
			t.Errorf("stage %q: ENTRYPOINT %s, want the exec form [\"...\"]", st[0].args, entry)
		}
		if !copied {
			t.Errorf("stage %q copies nothing from the build stage", st[0].args)
		}
	}

	// The build stage's go build line, run here with VERSION set.
	var buildLine string
	for _, in := range stages[0] {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildLine = in.args
		}
	}
	_, buildLine, ok := strings.Cut(buildLine, "CGO_ENABLED=0 go build")
	if !ok {
		t.Fatal("no RUN ... CGO_ENABLED=0 go build in the build stage")
	}
	p := shellwords.NewParser()
	p.ParseEnv = true
	p.Getenv = func(k string) string { return map[string]string{"VERSION": "v0.0.0-docker-test"}[k] }
	words, err := p.Parse("go build" + buildLine)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "walsync")
	for i, w := range words {
		if w == "-o" && i+1 < len(words) {
			words[i+1] = bin
		}
	}
	build := exec.Command(words[0], words[1:]...)
	build.Dir = repoFile("")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%q: %v\n%s", words, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("the binary has an interpreter: not static")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %q (%v)", libs, err)
	}
	out := mustRunBin(t, bin, "version")
	if !strings.HasPrefix(out, "walsync v0.0.0-docker-test ") {
		t.Errorf("version %q, want the VERSION build argument", out)
	}
}

// mustRunBin runs the program bin to success and returns its stdout.
func mustRunBin(t *testing.T, bin string, args ...string) string {
	t.Helper()
	r := runWith(t, bin, args...)
	if r.code != 0 {
		t.Fatalf("%s %q: exit %d: %s", bin, args, r.code, r.stderr)
	}
	return r.stdout
}

// k8sObjects decodes every document of a Kubernetes manifest.
func k8sObjects(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		objs = append(objs, m)
	}
}

// get follows a path of map keys and slice indexes in decoded YAML.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

// strs converts a decoded YAML list of strings.
func strs(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

// TestKubernetesExample checks docs/packaging/k8s/app-with-walsync.yaml: every
// object is well formed, the sidecar's arguments are a valid watch command
// line whose directories are mounted, the containers run as non-root, and
// the restore step's shell guard does what docs/deploy.md says, run with
// the walsync under test: a database that exists is kept, no backup lets
// the application start empty, a backup is restored, and any other
// failure (here a target that does not exist) fails the pod.
func TestKubernetesExample(t *testing.T) {
	objs := k8sObjects(t, repoFile("docs/packaging/k8s/app-with-walsync.yaml"))
	var pod any
	for _, o := range objs {
		if o["apiVersion"] == nil || o["kind"] == nil || get(o, "metadata", "name") == nil {
			t.Errorf("object without apiVersion, kind or metadata.name: %v", o)
		}
		if o["kind"] == "Deployment" {
			pod = get(o, "spec", "template", "spec")
		}
	}
	if pod == nil {
		t.Fatal("no Deployment")
	}
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Errorf("pod securityContext.runAsNonRoot is not true")
	}
	var restoreScript string
	sidecar := false
	for _, c := range get(pod, "initContainers").([]any) {
		mounts := map[string]bool{}
		for _, m := range get(c, "volumeMounts").([]any) {
			mounts[get(m, "mountPath").(string)] = true
		}
		switch get(c, "name") {
		case "restore":
			if cmd := strs(get(c, "command")); cmd[0] != "/busybox/sh" {
				t.Errorf("restore command %q, want the debug image's shell", cmd)
			}
			restoreScript = get(c, "args", 0).(string)
		case "walsync":
			sidecar = true
			if get(c, "restartPolicy") != "Always" {
				t.Errorf("walsync restartPolicy %v, want Always (a native sidecar)", get(c, "restartPolicy"))
			}
			args := strs(get(c, "args"))
			if args[0] != "watch" {
				t.Fatalf("walsync args %q, want watch ...", args)
			}
			o := parseWatchArgs(t, args[1:])
			if !mounts[o.dir] || !mounts[o.spoolDir] {
				t.Errorf("--dir %s or --spool-dir %s is not a volume mount of the sidecar (%v)", o.dir, o.spoolDir, mounts)
			}
			if get(c, "securityContext", "readOnlyRootFilesystem") != true {
				t.Errorf("sidecar: readOnlyRootFilesystem is not true")
			}
		}
	}
	if !sidecar || restoreScript == "" {
		t.Fatal("want init containers restore and walsync")
	}

	// The guard, with /data moved to a temporary directory and the
	// walsync under test in PATH.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Dir(binPath)
	guard := func(t *testing.T, data, target string) result {
		t.Helper()
		cmd := exec.Command(sh, "-c", strings.ReplaceAll(restoreScript, "/data/", data+"/"))
		cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "WALSYNC_TARGET="+target)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{out.String(), errb.String(), code}
	}
	src := filepath.Join(t.TempDir(), "app.db")
	createDB(t, src)
	sqlite(t, src, "INSERT INTO t(n, v) VALUES (7, randomblob(10));\n")
	empty := t.TempDir()
	full := t.TempDir()
	mustRun(t, "snapshot", src, "-b", "file://"+full, "--name", "app.db")

	t.Run("Exists", func(t *testing.T) {
		data := t.TempDir()
		os.WriteFile(filepath.Join(data, "app.db"), []byte("keep"), 0o600)
		if r := guard(t, data, "file://"+full); r.code != 0 || !strings.Contains(r.stdout, "not restoring") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0, not restoring", r.code, r.stdout, r.stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(data, "app.db")); string(b) != "keep" {
			t.Fatalf("the existing database was replaced")
		}
	})
	t.Run("NoBackup", func(t *testing.T) {
		data := t.TempDir()
		if r := guard(t, data, "file://"+empty); r.code != 0 || !strings.Contains(r.stdout, "empty database") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0, empty database", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(data, "app.db")); !os.IsNotExist(err) {
			t.Fatalf("a database was created: %v", err)
		}
	})
	t.Run("Restore", func(t *testing.T) {
		data := t.TempDir()
		if r := guard(t, data, "file://"+full); r.code != 0 {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0", r.code, r.stdout, r.stderr)
		}
		if got := sqlite(t, filepath.Join(data, "app.db"), "SELECT n FROM t;\n"); got != "7\n" {
			t.Fatalf("restored rows %q, want 7", got)
		}
	})
	t.Run("TargetFails", func(t *testing.T) {
		data := t.TempDir()
		if r := guard(t, data, "file://"+filepath.Join(empty, "missing")); r.code == 0 || !strings.Contains(r.stderr, "walsync:") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want a failure with walsync's error", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(data, "app.db")); !os.IsNotExist(err) {
			t.Fatalf("a database was created: %v", err)
		}
	})
}
