package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfig: Parse never panics, every error names the file and is one
// line, and an accepted file has databases that each name one absolute
// path or directory.
func FuzzConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yml")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"target: s3://b/p\ndatabases:\n  - path: /a.db\n    sync-interval: 0\n  - dir: /d\n    pattern: '*.db'\n",
		"databases: [{path: $HOME/a.db}, {dir: '${X}'}]\n",
		"dbs:\n  - path: /a.db\n    replica: {url: 's3://b/a?endpoint=h:1'}\n  - dir: /d\n    pattern: x\n    replicas: [{url: 'file:///b'}]\n",
		"a: &a [*a]\n",
		"x-d: &d {path: /a.db}\ndatabases: [{<<: *d}, {<<: [*d, *d], path: /b.db}]\n",
		"databases:\n- path: /a\n  retention: 1h\n  snapshot-interval: 1ns\n",
	} {
		f.Add([]byte(s))
	}
	vars := env(map[string]string{"HOME": "/h", "X": "/x"})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, expand := range []bool{true, false} {
			c, err := Parse("f.yml", data, Options{ExpandEnv: expand, LookupEnv: vars, Home: "/h"})
			if err != nil {
				errs, ok := err.(Errors)
				if !ok || len(errs) == 0 {
					t.Fatalf("err = %#v, want Errors", err)
				}
				for _, e := range errs {
					if s := e.Error(); !strings.HasPrefix(s, "f.yml") || strings.Contains(s, "\n") {
						t.Fatalf("error %q: want one line starting with the file name", s)
					}
				}
				continue
			}
			if len(c.Databases) == 0 {
				t.Fatal("accepted with no database")
			}
			for _, db := range c.Databases {
				if (db.Path == "") == (db.Dir == "") {
					t.Fatalf("%s: path %q, dir %q: want exactly one", db.Field, db.Path, db.Dir)
				}
				if p := db.Path + db.Dir; !filepath.IsAbs(p) {
					t.Fatalf("%s: %q is not absolute", db.Field, p)
				}
				if db.Dir != "" && db.Pattern == "" {
					t.Fatalf("%s: dir without pattern", db.Field)
				}
			}
			for _, w := range c.Warnings {
				if s := w.String(); !strings.HasPrefix(s, "f.yml") || strings.Contains(s, "\n") {
					t.Fatalf("warning %q: want one line starting with the file name", s)
				}
			}
		}
	})
}
