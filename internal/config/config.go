// Package config reads walsync's configuration file: YAML in walsync's own
// format, or a Litestream v0.5 config (a file with a top-level dbs: list),
// translated to the same [Config].
//
// Usage:
//
//	c, err := config.Read("/etc/walsync.yml", config.Options{ExpandEnv: true})
//	if err != nil { ... } // [Errors]: one *Error per bad field, each naming file:line: field
//	for _, w := range c.Warnings { log.Warn(w.String()) }
//
// Values may use $NAME and ${NAME} (environment variables; $$ is a literal
// $) unless Options.ExpandEnv is false; only values are expanded, never
// keys, and a variable that is not set is an error. Validation happens
// here, up front: durations, counts, choices, one of path and dir per
// database, absolute paths. What only the command can check (the target
// URL, sizes) it reports through [Config.Errorf], with the same form.
//
// The format and the Litestream mapping are documented in docs/config.md.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where walsync watch looks for a config file when it is
// given neither a database nor -c.
const DefaultPath = "/etc/walsync.yml"

// DefaultPattern is the file name pattern of a database entry with dir and
// no pattern, as `walsync watch --pattern`.
const DefaultPattern = "*.db"

// Config is a parsed, validated configuration file. Pointer fields are nil
// when the file does not set them.
type Config struct {
	File       string // the file it was read from
	Litestream bool   // the file is a Litestream v0.5 config

	Target string // target URL, as `walsync watch -b`; "" if not set

	// Process-wide defaults; each database may override the first three.
	SyncInterval     *time.Duration // 0: upload at once
	SnapshotInterval *time.Duration
	Retention        *time.Duration
	L0Retention      *time.Duration
	Compaction       *string // compaction intervals, as walsync watch --compaction-intervals
	CompactionJobs   *int    // compaction-concurrency
	CheckpointFrames *int
	Concurrency      *int
	SpoolDir         *string
	SpoolMax         *string // a size such as 2GiB; the command validates it
	LeaseTTL         *time.Duration
	Takeover         *bool
	RestoreIfMissing *bool // as `walsync watch --restore-if-missing`

	LogLevel  string // debug, info, warn or error; "" if not set
	LogFormat string // text or json; "" if not set

	// MetricsAddr is the address to serve metrics on (metrics-addr, or
	// Litestream's addr), as `walsync watch --metrics-addr`.
	MetricsAddr string

	Databases []Database

	// Credentials are static S3 credentials from a Litestream config
	// (access-key-id, secret-access-key); zero if it has none. Never log
	// them.
	Credentials Credentials

	// Warnings are settings accepted but not applied, one per key.
	Warnings []Warning

	lines map[string]int
}

// Database is one entry of the database list: a file (Path) or a
// directory tree (Dir and Pattern).
type Database struct {
	Field string // its field name, such as databases[2]
	Line  int    // the line it starts on

	Path    string // absolute path of one database
	Name    string // its name in the target; "" for the default
	Dir     string // absolute path of a directory watched recursively
	Pattern string // file name pattern under Dir

	SyncInterval     *time.Duration // overrides Config.SyncInterval
	SnapshotInterval *time.Duration // overrides Config.SnapshotInterval
	Retention        *time.Duration // overrides Config.Retention
}

// Credentials are static S3 credentials.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
}

// String hides the secret, so that no format verb prints it.
func (c Credentials) String() string {
	if c == (Credentials{}) {
		return "none"
	}
	return "REDACTED"
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return c.String() }

// Options control how a file is read.
type Options struct {
	// ExpandEnv replaces $NAME and ${NAME} in values.
	ExpandEnv bool

	// LookupEnv looks variables up. Default: os.LookupEnv.
	LookupEnv func(string) (string, bool)

	// Home is the directory ~/ stands for in paths. Default: $HOME.
	Home string
}

// Error is one invalid setting.
type Error struct {
	File  string
	Line  int    // 0: the setting is absent
	Field string // such as databases[1].sync-interval
	Err   error
}

func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return oneLine.Replace(s + ": " + e.Err.Error())
}

// oneLine escapes line breaks, which keys and values may hold.
var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`)

func (e *Error) Unwrap() error { return e.Err }

// Errors are the invalid settings of a file, in file order, at least one.
type Errors []*Error

// Error returns one line per setting.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Warning is a setting accepted but not applied.
type Warning struct {
	File  string
	Line  int
	Field string
	Msg   string
}

// String returns "file:line: field: message".
func (w Warning) String() string {
	return (&Error{File: w.File, Line: w.Line, Field: w.Field, Err: plain(w.Msg)}).Error()
}

type plain string

func (p plain) Error() string { return string(p) }

// Errorf returns an *Error for field (as Config's fields are named in the
// file, such as "target" or "databases[0].path") at the line that set it.
func (c *Config) Errorf(field, format string, args ...any) *Error {
	return &Error{File: c.File, Line: c.lines[field], Field: field, Err: fmt.Errorf(format, args...)}
}

// Line returns the line that set field, or 0.
func (c *Config) Line(field string) int { return c.lines[field] }

// Read reads and validates the file at path.
func Read(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, opts)
}

// maxSize bounds a config file: it lists directories, not every database.
const maxSize = 4 << 20

// Parse parses and validates the content of a config file; file names it
// in errors.
func Parse(file string, data []byte, opts Options) (*Config, error) {
	if len(data) > maxSize {
		return nil, Errors{{File: file, Err: fmt.Errorf("larger than %d MiB", maxSize>>20)}}
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if opts.Home == "" {
		opts.Home = os.Getenv("HOME")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		n, msg := yamlError(err)
		return nil, Errors{{File: file, Line: n, Err: fmt.Errorf("not valid YAML: %s", msg)}}
	}
	d := &decoder{file: file, expand: opts.ExpandEnv, lookup: opts.LookupEnv, lines: map[string]int{}}
	c := &Config{File: file}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	top := d.pairs(root, "")
	if isLitestream(top) {
		c.Litestream = true
		d.litestream(c, top, opts.Home)
	} else {
		d.walsync(c, top)
	}
	if len(d.errs) == 0 && len(c.Databases) == 0 {
		field := "databases"
		if c.Litestream {
			field = "dbs"
		}
		d.errorf(root, field, "no database: list at least one path or dir")
	}
	c.Warnings, c.lines = d.warns, d.lines
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return c, nil
}

// isLitestream reports whether the top-level keys are a Litestream
// config's: it lists databases under dbs.
func isLitestream(top []pair) bool {
	for _, p := range top {
		if p.key == "dbs" {
			return true
		}
	}
	return false
}

// walsync decodes walsync's own format. Every key is known; an unknown key
// is an error.
func (d *decoder) walsync(c *Config, top []pair) {
	for _, p := range top {
		switch p.key {
		case "target":
			c.Target, _ = d.str(p.val, p.field)
		case "sync-interval":
			c.SyncInterval = d.duration(p.val, p.field, 0, "0 (upload at once) or more")
		case "snapshot-interval":
			c.SnapshotInterval = d.duration(p.val, p.field, time.Nanosecond, "positive")
		case "retention":
			c.Retention = d.retention(p)
		case "l0-retention":
			c.L0Retention = d.duration(p.val, p.field, 0, "0 (keep for the whole retention) or more")
		case "compaction-intervals":
			if s, ok := d.str(p.val, p.field); ok {
				c.Compaction = &s
			}
		case "compaction-concurrency":
			c.CompactionJobs = d.positive(p.val, p.field)
		case "checkpoint-frames":
			c.CheckpointFrames = d.positive(p.val, p.field)
		case "concurrency":
			c.Concurrency = d.positive(p.val, p.field)
		case "spool-dir":
			if s, ok := d.str(p.val, p.field); ok {
				c.SpoolDir = &s
			}
		case "spool-max":
			if s, ok := d.str(p.val, p.field); ok {
				c.SpoolMax = &s
			}
		case "lease-ttl":
			c.LeaseTTL = d.duration(p.val, p.field, time.Minute, "at least 1m")
		case "takeover":
			c.Takeover = d.boolean(p.val, p.field)
		case "restore-if-missing":
			c.RestoreIfMissing = d.boolean(p.val, p.field)
		case "log":
			for _, q := range d.pairs(p.val, p.field) {
				switch q.key {
				case "level":
					c.LogLevel = d.oneOf(q.val, q.field, "debug", "info", "warn", "error")
				case "format":
					c.LogFormat = d.oneOf(q.val, q.field, "text", "json")
				default:
					d.errorf(q.keyNode, q.field, "unknown key (want level or format)")
				}
			}
		case "metrics-addr":
			c.MetricsAddr, _ = d.str(p.val, p.field)
		case "databases":
			for i, n := range d.items(p.val, p.field) {
				if db, ok := d.database(n, fmt.Sprintf("%s[%d]", p.field, i)); ok {
					c.Databases = append(c.Databases, db)
				}
			}
		default:
			if strings.HasPrefix(p.key, "x-") {
				continue // a place for YAML anchors, as in Compose files
			}
			d.errorf(p.keyNode, p.field, "unknown key (see docs/config.md)")
		}
	}
	d.checkUnique(c.Databases)
}

// database decodes one entry of databases.
func (d *decoder) database(n *yaml.Node, field string) (Database, bool) {
	db := Database{Field: field, Line: line(resolve(n))}
	errs := len(d.errs)
	var pathNode, dirNode, patternNode, nameNode *yaml.Node
	for _, p := range d.pairs(n, field) {
		switch p.key {
		case "path":
			pathNode = p.val
			db.Path = d.absPath(p.val, p.field, "")
		case "dir":
			dirNode = p.val
			db.Dir = d.absPath(p.val, p.field, "")
		case "pattern":
			patternNode = p.val
			db.Pattern = d.pattern(p.val, p.field)
		case "name":
			nameNode = p.val
			db.Name, _ = d.str(p.val, p.field)
		case "sync-interval":
			db.SyncInterval = d.duration(p.val, p.field, 0, "0 (upload at once) or more")
		case "snapshot-interval":
			db.SnapshotInterval = d.duration(p.val, p.field, time.Nanosecond, "positive")
		case "retention":
			db.Retention = d.retention(p)
		default:
			d.errorf(p.keyNode, p.field, "unknown key (want path or dir, pattern, name, sync-interval, snapshot-interval, retention)")
		}
	}
	d.checkEntry(&db, n, pathNode, dirNode, patternNode, nameNode)
	return db, len(d.errs) == errs
}

// checkEntry checks that a database entry has one of path and dir, and
// only the keys that go with it.
func (d *decoder) checkEntry(db *Database, n, pathNode, dirNode, patternNode, nameNode *yaml.Node) {
	switch {
	case pathNode == nil && dirNode == nil:
		d.errorf(resolve(n), db.Field, "give path (one database) or dir (a directory tree)")
	case pathNode != nil && dirNode != nil:
		d.errorf(dirNode, db.Field+".dir", "give path or dir, not both")
	case pathNode != nil && patternNode != nil:
		d.errorf(patternNode, db.Field+".pattern", "only with dir")
	case dirNode != nil && nameNode != nil:
		d.errorf(nameNode, db.Field+".name", "only with path: databases under dir are named by their path relative to it")
	}
	if dirNode != nil && db.Pattern == "" && patternNode == nil {
		db.Pattern = DefaultPattern
	}
}

// retention decodes a retention setting (0: keep everything).
func (d *decoder) retention(p pair) *time.Duration {
	return d.duration(p.val, p.field, 0, "0 (keep everything) or more")
}

// absPath returns the absolute path in n: walsync's format wants it
// absolute (a daemon's working directory is no anchor); home, if not "",
// is what a leading ~/ stands for (Litestream configs).
func (d *decoder) absPath(n *yaml.Node, field, home string) string {
	if isNull(n) {
		d.errorf(resolve(n), field, "no path")
		return ""
	}
	s, ok := d.str(n, field)
	if !ok {
		return ""
	}
	if home != "" && (s == "~" || strings.HasPrefix(s, "~/")) {
		s = filepath.Join(home, s[1:])
	}
	if !filepath.IsAbs(s) {
		d.errorf(n, field, "%q: want an absolute path", s)
		return ""
	}
	return filepath.Clean(s)
}

// pattern returns the file name pattern in n.
func (d *decoder) pattern(n *yaml.Node, field string) string {
	s, ok := d.str(n, field)
	if !ok {
		if isNull(n) {
			d.errorf(resolve(n), field, "no pattern")
		}
		return ""
	}
	if s == "" {
		d.errorf(n, field, "no pattern")
		return ""
	}
	if strings.Contains(s, "/") {
		d.errorf(n, field, "%q: a pattern matches file names, not paths", s)
		return ""
	}
	if _, err := filepath.Match(s, ""); err != nil {
		d.errorf(n, field, "%q: %v", s, err)
		return ""
	}
	return s
}

// checkUnique reports a path, directory or name listed twice.
func (d *decoder) checkUnique(dbs []Database) {
	seen := map[string]string{}
	for _, db := range dbs {
		keys := []string{"path " + db.Path, "dir " + db.Dir}
		if db.Name != "" {
			keys = append(keys, "name "+db.Name)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, " ") {
				continue
			}
			if prev, dup := seen[k]; dup {
				d.errs = append(d.errs, &Error{File: d.file, Line: db.Line, Field: db.Field,
					Err: fmt.Errorf("same %s as %s", strings.Fields(k)[0], prev)})
				continue
			}
			seen[k] = db.Field
		}
	}
}

// yamlError returns the line a yaml.v3 error names (0 if none) and its
// message on one line, without the "yaml: line N:" prefix.
func yamlError(err error) (int, string) {
	s := strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " ")
	var n int
	if _, e := fmt.Sscanf(s, "line %d:", &n); e == nil {
		_, s, _ = strings.Cut(s, ": ")
		return n, s
	}
	return 0, s
}
