package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env returns a LookupEnv over vars.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func dur(s string) *time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &d
}

func TestParse(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		data := `# every key
target: s3://backups/prod?region=eu-west-1
sync-interval: 0
snapshot-interval: 12h
retention: 168h
checkpoint-frames: 500
concurrency: 8
spool-dir: /var/spool/walsync
spool-max: 2GiB
lease-ttl: 5m
takeover: true
log:
  level: warn
  format: json
metrics-addr: 127.0.0.1:9090
databases:
  - path: /var/lib/app/main.db
    name: main
    sync-interval: 100ms
    snapshot-interval: 1h
    retention: 24h
  - dir: /var/lib/app/tenants
  - dir: /srv/other
    pattern: "*.sqlite"
`
		c, err := Parse("w.yml", []byte(data), Options{ExpandEnv: true, LookupEnv: env(nil)})
		if err != nil {
			t.Fatal(err)
		}
		if c.Litestream {
			t.Errorf("Litestream = true, want false")
		}
		if got, want := c.Target, "s3://backups/prod?region=eu-west-1"; got != want {
			t.Errorf("Target = %q, want %q", got, want)
		}
		for _, f := range []struct {
			name      string
			got, want any
		}{
			{"SyncInterval", *c.SyncInterval, time.Duration(0)},
			{"SnapshotInterval", *c.SnapshotInterval, 12 * time.Hour},
			{"Retention", *c.Retention, 168 * time.Hour},
			{"CheckpointFrames", *c.CheckpointFrames, 500},
			{"Concurrency", *c.Concurrency, 8},
			{"SpoolDir", *c.SpoolDir, "/var/spool/walsync"},
			{"SpoolMax", *c.SpoolMax, "2GiB"},
			{"LeaseTTL", *c.LeaseTTL, 5 * time.Minute},
			{"Takeover", *c.Takeover, true},
			{"LogLevel", c.LogLevel, "warn"},
			{"LogFormat", c.LogFormat, "json"},
			{"MetricsAddr", c.MetricsAddr, "127.0.0.1:9090"},
			{"Credentials", c.Credentials, Credentials{}},
		} {
			if f.got != f.want {
				t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
			}
		}
		want := []Database{
			{Field: "databases[0]", Line: 17, Path: "/var/lib/app/main.db", Name: "main",
				SyncInterval: dur("100ms"), SnapshotInterval: dur("1h"), Retention: dur("24h")},
			{Field: "databases[1]", Line: 22, Dir: "/var/lib/app/tenants", Pattern: "*.db"},
			{Field: "databases[2]", Line: 23, Dir: "/srv/other", Pattern: "*.sqlite"},
		}
		if !reflect.DeepEqual(c.Databases, want) {
			t.Errorf("Databases =\n%+v\nwant\n%+v", c.Databases, want)
		}
		var warned []string
		for _, w := range c.Warnings {
			warned = append(warned, fmt.Sprintf("%d:%s", w.Line, w.Field))
		}
		if got, want := strings.Join(warned, " "), ""; got != want {
			t.Errorf("warnings at %s, want %s", got, want)
		}
		if got, want := c.Errorf("spool-max", "bad").Error(), "w.yml:9: spool-max: bad"; got != want {
			t.Errorf("Errorf = %q, want %q", got, want)
		}
	})

	// Each error names file:line: field, one line each.
	for _, c := range []struct {
		name, data string
		want       []string
	}{
		{"ErrYAML", "target: [\n", []string{"e.yml:1: not valid YAML: did not find expected node content"}},
		{"ErrNotMapping", "- a\n", []string{"e.yml:1: want a mapping (key: value lines), got a list"}},
		{"ErrEmpty", "", []string{"e.yml: databases: no database: list at least one path or dir"}},
		{"ErrNoDatabases", "target: file:///x\n", []string{"e.yml:1: databases: no database: list at least one path or dir"}},
		{"ErrUnknownKey", "targets: x\ndatabases: [{path: /a.db}]\n", []string{"e.yml:1: targets: unknown key (see docs/config.md)"}},
		{"ErrDuplicateKey", "target: a\ntarget: b\ndatabases: [{path: /a.db}]\n", []string{"e.yml:2: target: given twice (first at line 1)"}},
		{"ErrDuration", "sync-interval: 1\ndatabases: [{path: /a.db}]\n", []string{`e.yml:1: sync-interval: "1" is not a duration (use a unit: 500ms, 1s, 5m, 24h)`}},
		{"ErrNegativeSync", "databases:\n  - path: /a.db\n    sync-interval: -1s\n", []string{"e.yml:3: databases[0].sync-interval: -1s must be 0 (upload at once) or more"}},
		{"ErrSnapshotZero", "snapshot-interval: 0s\ndatabases: [{path: /a.db}]\n", []string{"e.yml:1: snapshot-interval: 0s must be positive"}},
		{"ErrLeaseTTL", "lease-ttl: 30s\ndatabases: [{path: /a.db}]\n", []string{"e.yml:1: lease-ttl: 30s must be at least 1m"}},
		{"ErrConcurrency", "concurrency: none\ndatabases: [{path: /a.db}]\n", []string{`e.yml:1: concurrency: "none" is not a positive integer`}},
		{"ErrTakeover", "takeover: maybe\ndatabases: [{path: /a.db}]\n", []string{`e.yml:1: takeover: "maybe" is not true or false`}},
		{"ErrLogLevel", "log:\n  level: loud\ndatabases: [{path: /a.db}]\n", []string{`e.yml:2: log.level: "loud": want debug, info, warn, error`}},
		{"ErrLogKey", "log:\n  file: /x\ndatabases: [{path: /a.db}]\n", []string{"e.yml:2: log.file: unknown key (want level or format)"}},
		{"ErrRelativePath", "databases:\n  - path: app.db\n", []string{`e.yml:2: databases[0].path: "app.db": want an absolute path`}},
		{"ErrNoPathNorDir", "databases:\n  - name: x\n", []string{"e.yml:2: databases[0]: give path (one database) or dir (a directory tree)"}},
		{"ErrPathAndDir", "databases:\n  - path: /a.db\n    dir: /d\n", []string{"e.yml:3: databases[0].dir: give path or dir, not both"}},
		{"ErrPatternWithPath", "databases:\n  - path: /a.db\n    pattern: '*.db'\n", []string{"e.yml:3: databases[0].pattern: only with dir"}},
		{"ErrNameWithDir", "databases:\n  - dir: /d\n    name: x\n", []string{"e.yml:3: databases[0].name: only with path: databases under dir are named by their path relative to it"}},
		{"ErrPatternSlash", "databases:\n  - dir: /d\n    pattern: a/*.db\n", []string{`e.yml:3: databases[0].pattern: "a/*.db": a pattern matches file names, not paths`}},
		{"ErrPatternSyntax", "databases:\n  - dir: /d\n    pattern: '[a'\n", []string{`e.yml:3: databases[0].pattern: "[a": syntax error in pattern`}},
		{"ErrSamePath", "databases:\n  - path: /a.db\n  - path: /a.db\n", []string{"e.yml:3: databases[1]: same path as databases[0]"}},
		{"ErrSameName", "databases:\n  - path: /a.db\n    name: x\n  - path: /b.db\n    name: x\n", []string{"e.yml:4: databases[1]: same name as databases[0]"}},
		{"ErrDatabasesNotList", "databases: /a.db\n", []string{"e.yml:1: databases: want a list (lines starting with -), got a single value"}},
		{"ErrUnsetVar", "target: s3://$BUCKET/x\ndatabases: [{path: /a.db}]\n", []string{"e.yml:1: target: $BUCKET is not set (write $$ for a literal $, or pass --no-expand-env)"}},
		{"ErrSeveral", "sync-interval: x\nconcurrency: 0\ndatabases:\n  - path: a.db\n", []string{
			`e.yml:1: sync-interval: "x" is not a duration (use a unit: 500ms, 1s, 5m, 24h)`,
			`e.yml:2: concurrency: "0" is not a positive integer`,
			`e.yml:4: databases[0].path: "a.db": want an absolute path`,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("e.yml", []byte(c.data), Options{ExpandEnv: true, LookupEnv: env(nil)})
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want Errors", err)
			}
			if got, want := err.Error(), strings.Join(c.want, "\n"); got != want {
				t.Fatalf("err =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestExpandEnv: $VAR and ${VAR} are expanded in values, not keys, only
// when asked.
func TestExpandEnv(t *testing.T) {
	data := "target: s3://${BUCKET}/$PREFIX-x?region=$$REGION\ndatabases:\n  - path: $DIR/app.db\n"
	vars := env(map[string]string{"BUCKET": "b", "PREFIX": "p", "DIR": "/srv"})
	t.Run("On", func(t *testing.T) {
		c, err := Parse("x.yml", []byte(data), Options{ExpandEnv: true, LookupEnv: vars})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := c.Target, "s3://b/p-x?region=$REGION"; got != want {
			t.Errorf("Target = %q, want %q", got, want)
		}
		if got, want := c.Databases[0].Path, "/srv/app.db"; got != want {
			t.Errorf("Path = %q, want %q", got, want)
		}
	})
	t.Run("Off", func(t *testing.T) {
		_, err := Parse("x.yml", []byte(data), Options{ExpandEnv: false, LookupEnv: vars})
		if got, want := fmt.Sprint(err), `x.yml:3: databases[0].path: "$DIR/app.db": want an absolute path`; got != want {
			t.Fatalf("err = %s, want %s", got, want)
		}
		c, err := Parse("x.yml", []byte(strings.Replace(data, "$DIR", "/srv", 1)), Options{LookupEnv: vars})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := c.Target, "s3://${BUCKET}/$PREFIX-x?region=$$REGION"; got != want {
			t.Errorf("Target = %q, want %q", got, want)
		}
	})
}

func TestExpand(t *testing.T) {
	vars := env(map[string]string{"A": "1", "B_2": "two", "E": ""})
	for _, c := range []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"$A", "1", ""},
		{"${A}x", "1x", ""},
		{"$Ax", "", "$Ax is not set"},
		{"${B_2}/$B_2", "two/two", ""},
		{"[$E]", "[]", ""},
		{"$$A", "$A", ""},
		{"a$", "a$", ""},
		{"$ 1", "$ 1", ""},
		{"$1", "$1", ""},
		{"${A", "", "unclosed ${"},
		{"${1A}", "", "${1A}: not a variable name"},
		{"${}", "", "${}: not a variable name"},
	} {
		got, err := Expand(c.in, vars)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Expand(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// TestMergeKeysAndAliases: anchors, aliases and merge keys work as in
// YAML; explicit keys override merged ones.
func TestMergeKeysAndAliases(t *testing.T) {
	data := `defaults: &d
  sync-interval: 5s
  snapshot-interval: 2h
databases:
  - <<: *d
    path: /a.db
    sync-interval: 1s
`
	_, err := Parse("m.yml", []byte(data), Options{})
	if got, want := fmt.Sprint(err), "m.yml:1: defaults: unknown key (see docs/config.md)"; got != want {
		t.Fatalf("err = %s, want %s", got, want)
	}
	// Top-level keys starting with x- hold anchors.
	c, err := Parse("m.yml", []byte(strings.Replace(data, "defaults: &d", "x-defaults: &d", 1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := c.Databases[0]
	if a.Path != "/a.db" || *a.SyncInterval != time.Second || *a.SnapshotInterval != 2*time.Hour {
		t.Fatalf("merged entry = %+v, want /a.db, 1s, 2h", a)
	}
	data = "databases:\n  - &a {path: /a.db, sync-interval: 5s, snapshot-interval: 2h}\n  - <<: *a\n    path: /b.db\n    sync-interval: 1s\n"
	if c, err = Parse("m.yml", []byte(data), Options{}); err != nil {
		t.Fatal(err)
	}
	b := c.Databases[1]
	if b.Path != "/b.db" || *b.SyncInterval != time.Second || *b.SnapshotInterval != 2*time.Hour {
		t.Fatalf("merged entry = %+v, want /b.db, 1s, 2h", b)
	}
}

func TestRead(t *testing.T) {
	_, err := Read("testdata/no-such.yml", Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

// TestCredentialsHidden: no format verb prints a secret.
func TestCredentialsHidden(t *testing.T) {
	c := Credentials{AccessKeyID: "AKIAX", SecretAccessKey: "s3cr3t"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v", Config{Credentials: c})} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "AKIAX") {
			t.Errorf("printed %q", s)
		}
	}
}

// TestAliasBomb: aliases and merge keys that expand exponentially are cut
// off quickly with an error.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-0: &a0 {k: 1, j: 2}\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d {<<: [*a%d, *a%d], k%d: 1}\n", i, i, i-1, i-1, i)
	}
	b.WriteString("databases: [{<<: *a39, path: /a.db}]\n")
	start := time.Now()
	_, err := Parse("b.yml", []byte(b.String()), Options{})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	if err == nil || !strings.Contains(err.Error(), "too many aliases or merge keys") {
		t.Fatalf("err = %v, want too many aliases", err)
	}
}

// TestRestoreIfMissing: the top-level restore-if-missing key is a boolean,
// nil when absent.
func TestRestoreIfMissing(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		c, err := Parse("w.yml", []byte("restore-if-missing: true\ndatabases: [{path: /a.db}]\n"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c.RestoreIfMissing == nil || !*c.RestoreIfMissing {
			t.Errorf("RestoreIfMissing = %v, want true", c.RestoreIfMissing)
		}
		c, err = Parse("w.yml", []byte("databases: [{path: /a.db}]\n"), Options{})
		if err != nil || c.RestoreIfMissing != nil {
			t.Errorf("RestoreIfMissing = %v, %v; want nil when absent", c.RestoreIfMissing, err)
		}
	})
	t.Run("ErrNotBool", func(t *testing.T) {
		_, err := Parse("w.yml", []byte("restore-if-missing: maybe\ndatabases: [{path: /a.db}]\n"), Options{})
		if got, want := fmt.Sprint(err), `w.yml:1: restore-if-missing: "maybe" is not true or false`; got != want {
			t.Errorf("error %q, want %q", got, want)
		}
	})
}
