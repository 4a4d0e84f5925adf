package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
)

// loadWith parses watch's flags args ("FILE" stands for a config file
// holding text) and runs loadConfig, with config.DefaultPath pointing at
// defaultText in another file ("" for no such file).
func loadWith(t *testing.T, text, defaultText string, args ...string) (*watchOptions, *globals, string, error) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "w.yml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &watchOptions{}
	o.config.defaultPath = filepath.Join(dir, "default.yml")
	if defaultText != "" {
		if err := os.WriteFile(o.config.defaultPath, []byte(defaultText), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stderr bytes.Buffer
	g := &globals{stderr: &stderr}
	f := pflag.NewFlagSet("watch", pflag.ContinueOnError)
	f.StringVar(&g.logLevel, "log-level", "info", "")
	f.StringVar(&g.logFormat, "log-format", "text", "")
	o.AddFlags(f)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "FILE", file)
	}
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := loadConfig(f, g, o, f.Args())
	if err == nil {
		err = o.validate(f.Args())
	}
	return o, g, stderr.String(), err
}

const testConfig = `target: file:///tmp/walsync-config-test
sync-interval: 5s
snapshot-interval: 2h
concurrency: 9
log: {level: debug, format: json}
databases:
  - path: /srv/a.db
    sync-interval: 100ms
`

// TestLoadConfig: precedence between the file and flags, the default
// path, and the errors of the command's own checks.
func TestLoadConfig(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		o, g, _, err := loadWith(t, testConfig, "", "-c", "FILE")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			name      string
			got, want any
		}{
			{"target", o.target, "file:///tmp/walsync-config-test"},
			{"sync-interval", o.syncInterval, 5 * time.Second},
			{"snapshot-interval", o.snapshotInterval, 2 * time.Hour},
			{"concurrency", o.concurrency, 9},
			{"checkpoint-frames", o.checkpointFrames, replicate.DefaultCheckpointFrames},
			{"log-level", g.logLevel, "debug"},
			{"log-format", g.logFormat, "json"},
			{"database sync-interval", *o.config.cfg.Databases[0].SyncInterval, 100 * time.Millisecond},
		} {
			if f.got != f.want {
				t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
			}
		}
	})
	t.Run("OKFlagsWin", func(t *testing.T) {
		o, g, _, err := loadWith(t, testConfig, "", "--config=FILE", "--sync-interval", "2s", "-b", "file:///elsewhere", "--log-level", "warn", "--concurrency", "4")
		if err != nil {
			t.Fatal(err)
		}
		if o.syncInterval != 2*time.Second || o.target != "file:///elsewhere" || g.logLevel != "warn" || o.concurrency != 4 {
			t.Errorf("sync-interval %v, target %s, log-level %s, concurrency %d: want the flags' 2s, file:///elsewhere, warn, 4",
				o.syncInterval, o.target, g.logLevel, o.concurrency)
		}
		if o.snapshotInterval != 2*time.Hour || g.logFormat != "json" {
			t.Errorf("snapshot-interval %v, log-format %s: want the file's 2h, json", o.snapshotInterval, g.logFormat)
		}
	})
	t.Run("OKDefaultPath", func(t *testing.T) {
		o, _, _, err := loadWith(t, "", testConfig, "--sync-interval", "3s")
		if err != nil {
			t.Fatal(err)
		}
		if o.config.cfg == nil || o.target != "file:///tmp/walsync-config-test" || o.syncInterval != 3*time.Second {
			t.Fatalf("default config not read (target %q, sync-interval %v)", o.target, o.syncInterval)
		}
	})
	t.Run("OKDefaultPathNotReadWithDatabases", func(t *testing.T) {
		o, _, _, err := loadWith(t, "", "not: [valid", "/srv/b.db", "-b", "file:///x")
		if err != nil {
			t.Fatal(err)
		}
		if o.config.cfg != nil {
			t.Fatal("default config read although databases were given")
		}
	})
	t.Run("ErrNoDefaultNoDatabases", func(t *testing.T) {
		_, _, _, err := loadWith(t, "", "")
		if got, want := fmt.Sprint(err), "watch: give at least one database, --dir or -c FILE"; got != want {
			t.Fatalf("err = %s, want %s", got, want)
		}
	})
	t.Run("ErrBoth", func(t *testing.T) {
		_, _, _, err := loadWith(t, testConfig, "", "-c", "FILE", "/srv/b.db")
		if got, want := fmt.Sprint(err), "watch: give databases in the config file or on the command line, not both"; got != want {
			t.Fatalf("err = %s, want %s", got, want)
		}
	})
	t.Run("ErrName", func(t *testing.T) {
		_, _, _, err := loadWith(t, testConfig, "", "-c", "FILE", "--name", "x")
		if err == nil || !strings.Contains(err.Error(), "--name and --pattern go with databases on the command line") {
			t.Fatalf("err = %v, want --name refused", err)
		}
	})
	t.Run("ErrMissingFile", func(t *testing.T) {
		_, _, _, err := loadWith(t, "", "", "-c", "/no/such/walsync.yml")
		if got, want := fmt.Sprint(err), "config: open /no/such/walsync.yml: no such file or directory"; got != want {
			t.Fatalf("err = %s, want %s", got, want)
		}
	})
	t.Run("ErrNoTarget", func(t *testing.T) {
		_, _, _, err := loadWith(t, "databases: [{path: /srv/a.db}]\n", "", "-c", "FILE")
		if got := fmt.Sprint(err); !strings.HasSuffix(got, "w.yml: target: not set: give target: in the file or -b") {
			t.Fatalf("err = %s, want target not set", got)
		}
	})
	t.Run("ErrTargetURL", func(t *testing.T) {
		_, _, _, err := loadWith(t, "\ntarget: s3://b/p?colour=red\ndatabases: [{path: /srv/a.db}]\n", "", "-c", "FILE")
		if got := fmt.Sprint(err); !strings.Contains(got, "w.yml:2: target: s3: invalid URL") || !strings.Contains(got, "unknown parameter") {
			t.Fatalf("err = %s, want the target's line and the URL's problem", got)
		}
	})
	t.Run("ErrSpoolMax", func(t *testing.T) {
		_, _, _, err := loadWith(t, "target: file:///x\nspool-max: lots\ndatabases: [{path: /srv/a.db}]\n", "", "-c", "FILE")
		if got := fmt.Sprint(err); !strings.Contains(got, `w.yml:2: spool-max: "lots" is not a positive size`) {
			t.Fatalf("err = %s, want spool-max's line", got)
		}
	})
	t.Run("ErrSeveral", func(t *testing.T) {
		_, _, stderr, err := loadWith(t, "sync-interval: x\nconcurrency: 0\ndatabases: [{path: a.db}]\n", "", "-c", "FILE")
		if got := fmt.Sprint(err); !strings.HasSuffix(got, `w.yml:3: databases[0].path: "a.db": want an absolute path`) {
			t.Fatalf("err = %s, want the last error", got)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], "w.yml:1: sync-interval") || !strings.Contains(lines[1], "w.yml:2: concurrency") {
			t.Fatalf("stderr =\n%s\nwant the first two errors, one line each", stderr)
		}
	})
	t.Run("OKNoExpandEnv", func(t *testing.T) {
		text := "target: file:///x\nspool-dir: /var/$WALSYNC_NOT_SET\ndatabases: [{path: /srv/a.db}]\n"
		o, _, _, err := loadWith(t, text, "", "-c", "FILE", "--no-expand-env")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := o.spoolDir, "/var/$WALSYNC_NOT_SET"; got != want {
			t.Errorf("spool-dir = %q, want %q", got, want)
		}
		_, _, _, err = loadWith(t, text, "", "-c", "FILE")
		if got := fmt.Sprint(err); !strings.HasSuffix(got, "w.yml:2: spool-dir: $WALSYNC_NOT_SET is not set (write $$ for a literal $, or pass --no-expand-env)") {
			t.Errorf("err = %s, want $WALSYNC_NOT_SET not set", got)
		}
	})
	t.Run("OKLitestreamCredentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "from-env")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "from-env")
		t.Setenv("AWS_SESSION_TOKEN", "from-env")
		ls := "access-key-id: AKIAFILE\nsecret-access-key: secretfile\ndbs:\n  - path: /srv/a.db\n    replica: {url: s3://b/p/a}\n"
		o, _, _, err := loadWith(t, ls, "", "-c", "FILE")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := o.target, "s3://b/p"; got != want {
			t.Errorf("target = %s, want %s", got, want)
		}
		if os.Getenv("AWS_ACCESS_KEY_ID") != "AKIAFILE" || os.Getenv("AWS_SECRET_ACCESS_KEY") != "secretfile" {
			t.Error("the file's credentials are not in the environment the s3 client reads")
		}
		if _, ok := os.LookupEnv("AWS_SESSION_TOKEN"); ok {
			t.Error("AWS_SESSION_TOKEN of another identity is still set")
		}
	})
}

// TestConfigMetricsAddr: the file's metrics address becomes the value of
// watch's --metrics-addr when that flag exists and is not given.
func TestConfigMetricsAddr(t *testing.T) {
	file := filepath.Join(t.TempDir(), "w.yml")
	text := "target: file:///x\nmetrics-addr: 127.0.0.1:9191\ndatabases: [{path: /srv/a.db}]\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", file}, "127.0.0.1:9191"},
		{[]string{"-c", file, "--metrics-addr", ":1"}, ":1"},
	} {
		o := &watchOptions{}
		g := &globals{stderr: io.Discard}
		f := pflag.NewFlagSet("watch", pflag.ContinueOnError)
		o.AddFlags(f)
		var addr string
		if f.Lookup("metrics-addr") == nil {
			f.StringVar(&addr, "metrics-addr", "", "")
		}
		if err := f.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if err := loadConfig(f, g, o, f.Args()); err != nil {
			t.Fatal(err)
		}
		if got := f.Lookup("metrics-addr").Value.String(); got != c.want {
			t.Errorf("%v: --metrics-addr = %q, want %q", c.args, got, c.want)
		}
		if o.config.metricsUnserved {
			t.Errorf("%v: metrics said to be unserved although --metrics-addr exists", c.args)
		}
	}
}

// TestConfigWarnings: watch says at start which file it read, every key
// it accepts without applying (one WARN each, with file:line), a metrics
// address it cannot serve, and a file holding credentials that others may
// read.
func TestConfigWarnings(t *testing.T) {
	ls := `access-key-id: AKIAFILE
secret-access-key: secretfile
addr: ":9090"
snapshot:
  retention: 24h
dbs:
  - path: /srv/a.db
    monitor-interval: 1s
    replica: {url: s3://b/p/a}
`
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	o, _, _, err := loadWith(t, ls, "", "-c", "FILE")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(o.config.cfg.File, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	o.config.warn(slog.New(slog.NewTextHandler(&buf, nil)))
	out := buf.String()
	file := o.config.cfg.File
	wants := []string{
		"level=INFO msg=config file=" + file + " format=litestream databases=1\n",
		`level=WARN msg="config: ignored: walsync wakes on inotify events, it does not poll" at=` + file + ":8 key=dbs[0].monitor-interval\n",
		`level=WARN msg="config: the file holds credentials and other users may read it (chmod 600)" file=` + file + " mode=-rw-r--r--\n",
	}
	if o.config.metricsUnserved { // watch has no --metrics-addr
		wants = append(wants, `level=WARN msg="config: accepted but not applied: this build serves no metrics" at=`+file+":3 key=addr\n")
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secretfile") || strings.Contains(out, "AKIAFILE") {
		t.Errorf("log shows a credential:\n%s", out)
	}
}

// TestWatchConfigFile: `walsync watch -c FILE` replicates the databases
// the file lists (a path under its own name, a directory tree), to the
// target it names through an environment variable, and every database
// restores equal to its source.
func TestWatchConfigFile(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "cfg")
	t.Setenv("WALSYNC_TEST_TARGET", url)
	dir := t.TempDir()
	mainDB := filepath.Join(dir, "main", "app.db")
	tenant := filepath.Join(dir, "tenants", "t1", "app.sqlite")
	other := filepath.Join(dir, "tenants", "t1", "skip.db") // does not match the pattern
	for _, db := range []string{mainDB, tenant, other} {
		createDB(t, db)
	}
	cfg := filepath.Join(t.TempDir(), "walsync.yml")
	text := fmt.Sprintf(`target: ${WALSYNC_TEST_TARGET}
sync-interval: 1h
log:
  level: debug
databases:
  - path: %s
    name: main
    sync-interval: 50ms
  - dir: %s
    pattern: "*.sqlite"
    sync-interval: 50ms
    retention: 24h
`, mainDB, filepath.Join(dir, "tenants"))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "watch.log")
	w := startWatch(t, logPath, "-c", cfg)
	for _, db := range []string{mainDB, tenant, other} {
		writeLoad(t, db, 0, 100, 3)
	}
	// The per-database 50ms interval, not the file's 1h: the changes are
	// in the target while watch still runs.
	out := filepath.Join(t.TempDir(), "live.db")
	waitFor(t, func() bool {
		r := run(t, "restore", "main", "-b", url, "-o", out, "--force")
		return r.code == 0 && dump(t, out) == dump(t, mainDB)
	})
	w.stop()

	var debugLogged bool
	for _, rec := range logLines(t, logPath) {
		if rec["level"] == "WARN" && rec["key"] == "databases[1].retention" {
			t.Errorf("retention, which is applied, warned about: %v", rec)
		}
		debugLogged = debugLogged || rec["level"] == "DEBUG"
		if rec["level"] == "ERROR" {
			t.Errorf("error logged: %v", rec)
		}
	}
	if !debugLogged {
		t.Error("log.level: debug from the file not applied")
	}
	for name, src := range map[string]string{"main": mainDB, "t1/app.sqlite": tenant} {
		out := filepath.Join(t.TempDir(), "restored.db")
		mustRun(t, "restore", name, "-b", url, "-o", out)
		if got, want := dump(t, out), dump(t, src); got != want {
			t.Errorf("%s: restored dump differs from the source", name)
		}
	}
	if r := run(t, "restore", "t1/skip.db", "-b", url, "-o", filepath.Join(t.TempDir(), "x.db")); r.code == 0 {
		t.Error("t1/skip.db, which the pattern excludes, was replicated")
	}
}

// TestWatchLitestreamConfig: a Litestream v0.5 config, with the S3
// credentials in the file (the environment's are wrong), runs walsync
// watch; the ignored keys are reported one WARN each; `litestream restore
// -config` with the same file and `walsync restore` both restore the
// database equal to its source.
func TestWatchLitestreamConfig(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	litestream := testenv.Litestream(t)
	db := filepath.Join(t.TempDir(), "app.db")
	createDB(t, db)
	cfg := filepath.Join(t.TempDir(), "litestream.yml")
	text := fmt.Sprintf(`access-key-id: %s
secret-access-key: %s
l0-retention-check-interval: 10m
dbs:
  - path: %s
    checkpoint-interval: 1m
    replica:
      url: %s
      sync-interval: 50ms
`, testenv.AccessKeyID, testenv.SecretAccessKey, db, litestreamURL(endpoint, bucket, "ls-cfg/app.db"))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "wrong")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	logPath := filepath.Join(t.TempDir(), "watch.log")
	w := startWatch(t, logPath, "-c", cfg)
	writeLoad(t, db, 0, 200, 5)
	w.stop()

	ignored := map[string]bool{}
	for _, rec := range logLines(t, logPath) {
		if rec["level"] == "WARN" && strings.HasPrefix(fmt.Sprint(rec["msg"]), "config: ignored") {
			ignored[fmt.Sprint(rec["key"])] = true
		}
	}
	for _, key := range []string{"l0-retention-check-interval", "dbs[0].checkpoint-interval"} {
		if !ignored[key] {
			t.Errorf("no WARN that %s is ignored (got %v)", key, ignored)
		}
	}
	if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte(testenv.SecretAccessKey)) {
		t.Error("the log holds the secret access key")
	}

	t.Setenv("AWS_ACCESS_KEY_ID", testenv.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testenv.SecretAccessKey)
	out := filepath.Join(t.TempDir(), "walsync.db")
	mustRun(t, "restore", "app.db", "-b", s3URL(endpoint, bucket, "ls-cfg"), "-o", out)
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Error("walsync's restore differs from the source")
	}
	out = filepath.Join(t.TempDir(), "litestream.db")
	cmd := exec.Command(litestream, "restore", "-config", cfg, "-o", out, db)
	cmd.Env = litestreamEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litestream restore -config: %v\n%s", err, b)
	}
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Error("litestream's restore, from the same config, differs from the source")
	}
}
