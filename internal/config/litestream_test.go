package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLitestreamFixture reads a Litestream v0.5 config as an operator
// has it: every setting walsync does too is mapped, and every other key is
// reported, one warning per key, at its line.
func TestLitestreamFixture(t *testing.T) {
	vars := env(map[string]string{"LS_KEY_ID": "AKIAFIXTURE", "LS_SECRET": "fixture/secret+key"})
	c, err := Read("testdata/litestream.yml", Options{ExpandEnv: true, LookupEnv: vars})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Litestream {
		t.Errorf("Litestream = false, want true")
	}
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"Target", c.Target, "s3://backups/prod?endpoint=http%3A%2F%2Fminio.local%3A9000&path-style=true&region=eu-west-1"},
		{"SyncInterval", *c.SyncInterval, 2 * time.Second},
		{"SnapshotInterval", *c.SnapshotInterval, 12 * time.Hour},
		{"Retention", *c.Retention, 72 * time.Hour},
		{"LogLevel", c.LogLevel, "debug"},
		{"LogFormat", c.LogFormat, "json"},
		{"MetricsAddr", c.MetricsAddr, ":9090"},
		{"Credentials", c.Credentials == Credentials{AccessKeyID: "AKIAFIXTURE", SecretAccessKey: "fixture/secret+key"}, true},
	} {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	want := []Database{
		{Field: "dbs[0]", Line: 20, Path: "/var/lib/app/main.db", Name: "main.db", SyncInterval: dur("500ms")},
		{Field: "dbs[1]", Line: 27, Path: "/var/lib/app/audit.db", Name: "audit", SnapshotInterval: dur("1h")},
		{Field: "dbs[2]", Line: 35, Dir: "/var/lib/app/tenants", Pattern: "*.sqlite"},
	}
	if !reflect.DeepEqual(c.Databases, want) {
		t.Errorf("Databases =\n%+v\nwant\n%+v", c.Databases, want)
	}
	// Retention and compaction levels are applied, not warned about.
	if c.Retention == nil || *c.Retention != 72*time.Hour || c.Compaction == nil || *c.Compaction != "5m0s,1h0m0s" ||
		c.L0Retention == nil || *c.L0Retention != 5*time.Minute {
		t.Errorf("retention %v, levels %v, l0-retention %v: want 72h, 5m0s,1h0m0s and 5m", c.Retention, c.Compaction, c.L0Retention)
	}
	var warned []string
	for _, w := range c.Warnings {
		warned = append(warned, fmt.Sprintf("%d:%s", w.Line, w.Field))
		if !strings.HasPrefix(w.String(), fmt.Sprintf("testdata/litestream.yml:%d: %s: ", w.Line, w.Field)) {
			t.Errorf("warning %q does not start with file:line: field", w)
		}
	}
	wantWarned := []string{
		"9:logging.stderr", "18:heartbeat-url",
		"21:dbs[0].monitor-interval", "22:dbs[0].checkpoint-interval", "26:dbs[0].replica.retention-check-interval",
		"41:dbs[2].replica.storage-class",
	}
	if !reflect.DeepEqual(warned, wantWarned) {
		t.Errorf("warnings at\n%v\nwant\n%v", warned, wantWarned)
	}
	for _, w := range c.Warnings {
		if strings.Contains(w.String(), "fixture") || strings.Contains(w.String(), "AKIA") {
			t.Errorf("warning shows a credential: %s", w)
		}
	}
}

// TestLitestream: the replica forms map to one target and a name; what
// walsync cannot honour is refused with the line and field.
func TestLitestream(t *testing.T) {
	t.Setenv("HOME", "/home/op")
	for _, c := range []struct {
		name, data   string
		target, want string // want: the database's path/name or dir
	}{
		{"OK/URL", "dbs:\n  - path: /d/a.db\n    replica: {url: s3://b/x/y/a}\n", "s3://b/x/y", "/d/a.db=a"},
		{"OK/URLAtRoot", "dbs:\n  - path: /d/a.db\n    replica: {url: s3://b/a}\n", "s3://b", "/d/a.db=a"},
		{"OK/Bucket", "bucket: b\nregion: r1\ndbs:\n  - path: /d/a.db\n    replica: {type: s3, path: p/a.db}\n", "s3://b/p?region=r1", "/d/a.db=a.db"},
		{"OK/Dir", "dbs:\n  - dir: /d\n    pattern: '*.db'\n    replica: {url: s3://b/p}\n", "s3://b/p", "/d/*.db"},
		{"OK/DirAtRoot", "dbs:\n  - dir: /d\n    pattern: '*.db'\n    replica: {url: 's3://b'}\n", "s3://b", "/d/*.db"},
		{"OK/EndpointPathStyle", "dbs:\n  - path: /d/a.db\n    replica: {url: 's3://b/a?endpoint=s3.example.com'}\n", "s3://b?endpoint=https%3A%2F%2Fs3.example.com&path-style=true", "/d/a.db=a"},
		{"OK/NoPathStyle", "force-path-style: false\ndbs:\n  - path: /d/a.db\n    replica: {url: 's3://b/a', endpoint: 'http://10.0.0.1:9000'}\n", "s3://b?endpoint=http%3A%2F%2F10.0.0.1%3A9000", "/d/a.db=a"},
		{"OK/File", "dbs:\n  - path: /d/a.db\n    replica: {url: 'file:///backups/a'}\n", "file:///backups", "/d/a.db=a"},
		{"OK/FilePath", "dbs:\n  - path: /d/a.db\n    replica: {path: /backups/x/a}\n", "file:///backups/x", "/d/a.db=a"},
		{"OK/Home", "dbs:\n  - path: ~/a.db\n    replica: {url: 's3://b/a'}\n", "s3://b", "/home/op/a.db=a"},
		{"OK/SQLitePrefix", "dbs:\n  - path: sqlite:///d/a.db\n    replica: {url: 's3://b/a'}\n", "s3://b", "/d/a.db=a"},
		{"ErrTwoTargets", "dbs:\n  - path: /d/a.db\n    replica: {url: s3://b/x/a}\n  - path: /d/b.db\n    replica: {url: s3://b/y/b}\n", "",
			"l.yml:4: dbs[1].replica: target s3://b/y differs from dbs[0]'s s3://b/x: walsync writes to one target per process (run one walsync per target)"},
		{"ErrTwoReplicas", "dbs:\n  - path: /d/a.db\n    replicas:\n      - url: s3://b/a\n      - url: s3://c/a\n", "",
			"l.yml:5: dbs[0].replicas[1]: walsync writes each database to one target: give one replica"},
		{"ErrNoReplica", "dbs:\n  - path: /d/a.db\n", "", "l.yml:2: dbs[0]: no replica: give replica.url (or replica.bucket and path)"},
		{"ErrNoName", "dbs:\n  - path: /d/a.db\n    replica: {url: 's3://b'}\n", "",
			"l.yml:3: dbs[0].replica: the replica path must name the database: walsync stores it as <prefix>/<name>"},
		{"ErrGCS", "dbs:\n  - path: /d/a.db\n    replica: {url: 'gs://b/a'}\n", "", `l.yml:3: dbs[0].replica: replica type "gs": walsync writes to s3 and file targets only`},
		{"ErrProviderHost", "dbs:\n  - path: /d/a.db\n    replica: {url: 's3://b.s3.us-east-1.amazonaws.com/a'}\n", "",
			`l.yml:3: dbs[0].replica.url: host "b.s3.us-east-1.amazonaws.com": walsync does not translate provider host names; give the bucket as host and the server as ?endpoint= (or bucket: and endpoint:)`},
		{"ErrUserinfo", "dbs:\n  - path: /d/a.db\n    replica: {url: 's3://AKIA:SECRET@b/a'}\n", "",
			"l.yml:3: dbs[0].replica.url: credentials in the URL are not accepted; use access-key-id and secret-access-key or the environment"},
		{"ErrURLAndBucket", "dbs:\n  - path: /d/a.db\n    replica: {url: 's3://b/a', bucket: c}\n", "", "l.yml:3: dbs[0].replica.url: give url or bucket, not both"},
		{"ErrAge", "dbs:\n  - path: /d/a.db\n    replica:\n      url: s3://b/a\n      age: {recipients: [x]}\n", "",
			"l.yml:5: dbs[0].replica.age: encryption is not supported by walsync: refusing rather than writing plaintext backups"},
		{"ErrSSEC", "sse-customer-key: k\ndbs:\n  - path: /d/a.db\n    replica: {url: s3://b/a}\n", "",
			"l.yml:1: sse-customer-key: encryption is not supported by walsync: refusing rather than writing plaintext backups"},
		{"ErrExec", "exec: myapp serve\ndbs:\n  - path: /d/a.db\n    replica: {url: s3://b/a}\n", "",
			"l.yml:1: exec: not supported in a config file: start the application yourself (walsync replicates databases written by any process)"},
		{"ErrRestoreIfMissing", "dbs:\n  - path: /d/a.db\n    restore-if-db-not-exists: true\n    replica: {url: s3://b/a}\n", "",
			"l.yml:3: dbs[0].restore-if-db-not-exists: not supported: restore the database first (walsync restore), then start walsync"},
		{"ErrDirNoPattern", "dbs:\n  - dir: /d\n    replica: {url: s3://b/a}\n", "", "l.yml:2: dbs[0].dir: pattern is required with dir (as in Litestream)"},
		{"ErrHalfCredentials", "access-key-id: AKIA\ndbs:\n  - path: /d/a.db\n    replica: {url: s3://b/a}\n", "",
			"l.yml:4: dbs[0].replica: give both access-key-id and secret-access-key, or neither"},
		{"ErrCredentialsDiffer", "dbs:\n  - path: /d/a.db\n    replica: {url: s3://b/a, access-key-id: K1, secret-access-key: S1}\n  - path: /d/b.db\n    replica: {url: s3://b/b, access-key-id: K2, secret-access-key: S2}\n", "",
			"l.yml:4: dbs[1].replica: credentials differ from dbs[0]'s: walsync uses one set per process (values not shown)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("l.yml", []byte(c.data), Options{ExpandEnv: true, LookupEnv: env(nil)})
			if strings.HasPrefix(c.name, "Err") {
				if got := fmt.Sprint(err); got != c.want {
					t.Fatalf("err =\n%s\nwant\n%s", got, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Target != c.target {
				t.Errorf("Target = %q, want %q", cfg.Target, c.target)
			}
			db := cfg.Databases[0]
			got := db.Path + "=" + db.Name
			if db.Dir != "" {
				got = db.Dir + "/" + db.Pattern
			}
			if got != c.want {
				t.Errorf("database = %s, want %s", got, c.want)
			}
		})
	}
}

// TestLitestreamRelativePath: a relative path is relative to the working
// directory, as in Litestream.
func TestLitestreamRelativePath(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("l.yml", []byte("dbs:\n  - path: data/a.db\n    replica: {url: s3://b/a}\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Databases[0].Path, wd+"/data/a.db"; got != want {
		t.Fatalf("Path = %q, want %q", got, want)
	}
}
