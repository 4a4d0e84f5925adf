package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/walsync/walsync/internal/redact"
)

// replicaSettings are Litestream's replica settings, given at the top level
// (defaults for every replica) or in a replica. Fields are "" or nil when
// not set.
type replicaSettings struct {
	syncInterval    *time.Duration
	accessKeyID     string
	secretAccessKey string
	region          string
	bucket          string
	endpoint        string
	forcePathStyle  *bool
}

// set decodes p if it is a replica setting walsync maps or refuses, and
// reports whether it was.
func (d *decoder) setReplica(rs *replicaSettings, p pair) bool {
	switch p.key {
	case "sync-interval":
		rs.syncInterval = d.duration(p.val, p.field, 0, "0 (upload at once) or more")
	case "access-key-id":
		rs.accessKeyID = d.secret(p)
	case "secret-access-key":
		rs.secretAccessKey = d.secret(p)
	case "region":
		rs.region, _ = d.str(p.val, p.field)
	case "bucket":
		rs.bucket, _ = d.str(p.val, p.field)
	case "endpoint":
		rs.endpoint, _ = d.str(p.val, p.field)
	case "force-path-style":
		rs.forcePathStyle = d.boolean(p.val, p.field)
	case "age", "sse-customer-algorithm", "sse-customer-key", "sse-customer-key-path", "sse-kms-key-id":
		if !isNull(p.val) {
			d.errorf(p.keyNode, p.field, "encryption is not supported by walsync: refusing rather than writing plaintext backups")
		}
	default:
		return false
	}
	return true
}

// secret returns a credential; its errors never show the value.
func (d *decoder) secret(p pair) string {
	n := resolve(p.val)
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, p.field, "want a single value, got %s", kind(n))
		return ""
	}
	if !d.expand {
		return n.Value
	}
	s, err := Expand(n.Value, d.lookup)
	if err != nil {
		d.errorf(n, p.field, "cannot expand the value (not shown: a credential)")
		return ""
	}
	return s
}

// merged returns rs with the settings it lacks taken from defaults, as
// Litestream does.
func (rs replicaSettings) merged(defaults replicaSettings) replicaSettings {
	if rs.syncInterval == nil {
		rs.syncInterval = defaults.syncInterval
	}
	if rs.forcePathStyle == nil {
		rs.forcePathStyle = defaults.forcePathStyle
	}
	rs.accessKeyID = or(rs.accessKeyID, defaults.accessKeyID)
	rs.secretAccessKey = or(rs.secretAccessKey, defaults.secretAccessKey)
	rs.region = or(rs.region, defaults.region)
	rs.bucket = or(rs.bucket, defaults.bucket)
	rs.endpoint = or(rs.endpoint, defaults.endpoint)
	return rs
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// litestream translates a Litestream v0.5 config: what walsync does too is
// mapped, what it cannot do safely is an error, the rest is a warning.
func (d *decoder) litestream(c *Config, top []pair, home string) {
	var defaults replicaSettings
	var dbs *pair
	for i, p := range top {
		switch p.key {
		case "dbs":
			dbs = &top[i]
		case "addr":
			c.MetricsAddr, _ = d.str(p.val, p.field)
		case "logging":
			for _, q := range d.pairs(p.val, p.field) {
				switch q.key {
				case "level":
					c.LogLevel = d.oneOf(q.val, q.field, "debug", "info", "warn", "error")
				case "type":
					c.LogFormat = d.oneOf(q.val, q.field, "text", "json")
				case "stderr":
					d.warnf(q.keyNode, q.field, "ignored: walsync always logs to stderr")
				default:
					d.ignore(q)
				}
			}
		case "snapshot":
			c.SnapshotInterval, c.Retention = d.snapshot(p)
		case "levels":
			c.Compaction = d.levels(p)
		case "l0-retention":
			c.L0Retention = d.duration(p.val, p.field, 0, "0 or more")
		case "exec":
			if !isNull(p.val) {
				d.errorf(p.keyNode, p.field, "not supported in a config file: start the application yourself (walsync replicates databases written by any process)")
			}
		default:
			if !d.setReplica(&defaults, p) {
				d.ignore(p)
			}
		}
	}
	c.SyncInterval = defaults.syncInterval
	if dbs == nil {
		return
	}
	var first *Database
	for i, n := range d.items(dbs.val, dbs.field) {
		field := fmt.Sprintf("%s[%d]", dbs.field, i)
		errs := len(d.errs)
		db, loc := d.litestreamDB(n, field, home, defaults)
		if len(d.errs) > errs {
			continue
		}
		if first == nil {
			first = &db
			c.Target, c.Credentials = loc.target, loc.creds
			if loc.creds != (Credentials{}) && !strings.HasPrefix(loc.target, "s3:") {
				d.warnf(resolve(n), field+".replica", "access-key-id and secret-access-key ignored: the target is not on S3")
			}
			if strings.HasPrefix(loc.target, "file:") {
				d.warnf(resolve(n), field+".replica", "walsync's file target layout differs from Litestream's: Litestream cannot restore it (S3 targets are shared)")
			}
		} else if loc.target != c.Target {
			d.errorf(resolve(n), field+".replica", "target %s differs from %s's %s: walsync writes to one target per process (run one walsync per target)", loc.target, first.Field, c.Target)
			continue
		} else if loc.creds != c.Credentials {
			d.errorf(resolve(n), field+".replica", "credentials differ from %s's: walsync uses one set per process (values not shown)", first.Field)
			continue
		}
		c.Databases = append(c.Databases, db)
	}
	d.checkUnique(c.Databases)
}

// levels decodes Litestream's levels: a list of {interval: D}, levels
// 1, 2, ... in order, as --compaction-intervals.
func (d *decoder) levels(p pair) *string {
	if p.val.Kind != yaml.SequenceNode {
		d.errorf(p.keyNode, p.field, "want a list of {interval: DURATION}")
		return nil
	}
	var parts []string
	for i, item := range p.val.Content {
		field := fmt.Sprintf("%s[%d]", p.field, i)
		for _, q := range d.pairs(item, field) {
			if q.key != "interval" {
				d.ignore(q)
				continue
			}
			if v := d.duration(q.val, q.field, time.Nanosecond, "positive"); v != nil {
				parts = append(parts, v.String())
			}
		}
	}
	s := strings.Join(parts, ",")
	return &s
}

// snapshot decodes Litestream's snapshot: {interval, retention}.
func (d *decoder) snapshot(p pair) (interval, retention *time.Duration) {
	for _, q := range d.pairs(p.val, p.field) {
		switch q.key {
		case "interval":
			interval = d.duration(q.val, q.field, time.Nanosecond, "positive")
		case "retention":
			retention = d.retention(q)
		default:
			d.ignore(q)
		}
	}
	return interval, retention
}

// location is where a Litestream database's replica puts it.
type location struct {
	target string
	creds  Credentials
}

// litestreamDB translates one entry of dbs.
func (d *decoder) litestreamDB(n *yaml.Node, field, home string, defaults replicaSettings) (Database, location) {
	db := Database{Field: field, Line: line(resolve(n))}
	var pathNode, dirNode, patternNode *yaml.Node
	var recursive, watch *bool
	var replicas []*yaml.Node
	var replicaField string
	for _, p := range d.pairs(n, field) {
		switch p.key {
		case "path":
			pathNode = p.val
			db.Path = d.litestreamPath(p.val, p.field, home)
		case "dir":
			dirNode = p.val
			db.Dir = d.litestreamPath(p.val, p.field, home)
		case "pattern":
			patternNode = p.val
			db.Pattern = d.pattern(p.val, p.field)
		case "recursive":
			recursive = d.boolean(p.val, p.field)
		case "watch":
			watch = d.boolean(p.val, p.field)
		case "snapshot":
			db.SnapshotInterval, db.Retention = d.snapshot(p)
		case "replica":
			replicas, replicaField = append(replicas, p.val), p.field
		case "replicas":
			for i, r := range d.items(p.val, p.field) {
				replicas, replicaField = append(replicas, r), fmt.Sprintf("%s[%d]", p.field, i)
			}
		case "restore-if-db-not-exists":
			if v := d.boolean(p.val, p.field); v != nil && *v {
				d.errorf(p.keyNode, p.field, "not supported: restore the database first (walsync restore), then start walsync")
			}
		default:
			d.ignore(p)
		}
	}
	switch {
	case pathNode == nil && dirNode == nil:
		d.errorf(resolve(n), field, "give path (one database) or dir (a directory tree)")
	case pathNode != nil && dirNode != nil:
		d.errorf(dirNode, field+".dir", "give path or dir, not both")
	case dirNode != nil && patternNode == nil:
		d.errorf(dirNode, field+".dir", "pattern is required with dir (as in Litestream)")
	case pathNode != nil && patternNode != nil:
		d.errorf(patternNode, field+".pattern", "only with dir")
	}
	if dirNode != nil && (recursive == nil || !*recursive || watch == nil || !*watch) {
		d.warnf(dirNode, field+".dir", "walsync watches dir and its subdirectories and picks up new databases (recursive and watch are always on)")
	}
	switch len(replicas) {
	case 0:
		d.errorf(resolve(n), field, "no replica: give replica.url (or replica.bucket and path)")
		return db, location{}
	case 1:
	default:
		d.errorf(resolve(replicas[1]), replicaField, "walsync writes each database to one target: give one replica")
		return db, location{}
	}
	errs := len(d.errs)
	loc, rpath, sync := d.replica(replicas[0], replicaField, defaults)
	db.SyncInterval = sync
	if len(d.errs) > errs {
		return db, loc
	}
	if db.Path != "" {
		// A database's replica path is <prefix>/<name> (docs/format.md).
		if rpath == "" {
			d.errorf(resolve(replicas[0]), replicaField, "the replica path must name the database: walsync stores it as <prefix>/<name>")
			return db, loc
		}
		db.Name = path.Base(rpath)
		rpath = path.Dir(rpath)
	}
	loc.target = targetURL(loc.target, rpath)
	return db, loc
}

// litestreamPath returns an absolute path as Litestream reads it: without
// a sqlite:// or sqlite3:// prefix, ~/ expanded, relative to the working
// directory.
func (d *decoder) litestreamPath(n *yaml.Node, field, home string) string {
	s, ok := d.str(n, field)
	if !ok || s == "" {
		if isNull(n) || ok {
			d.errorf(resolve(n), field, "no path")
		}
		return ""
	}
	for _, prefix := range []string{"sqlite3://", "sqlite://"} {
		s = strings.TrimPrefix(s, prefix)
	}
	if s == "~" || strings.HasPrefix(s, "~/") {
		if home == "" {
			d.errorf(n, field, "%q: no home directory to expand ~ to", s)
			return ""
		}
		s = filepath.Join(home, s[1:])
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		d.errorf(n, field, "%q: %v", s, err)
		return ""
	}
	return abs
}

// providerHost reports whether host is a provider host name Litestream
// turns into a bucket, region and endpoint; walsync wants them spelled out.
func providerHost(host string) bool {
	for _, suffix := range []string{".amazonaws.com", ".digitaloceanspaces.com", ".backblazeb2.com", ".filebase.com", ".scw.cloud", ".neon.tech"} {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return false
}

// replica translates one replica: it returns the target without its path
// (a URL "s3://bucket?…" or "file://") and the credentials, the replica
// path (slash-separated, no leading or trailing slash), and the replica's
// own sync-interval.
func (d *decoder) replica(n *yaml.Node, field string, defaults replicaSettings) (location, string, *time.Duration) {
	loc, rpath, rs := d.replicaLocation(n, field, defaults)
	return loc, rpath, rs.syncInterval
}

// replicaLocation does the work of replica; it returns the replica's own
// settings, not merged with the defaults.
func (d *decoder) replicaLocation(n *yaml.Node, field string, defaults replicaSettings) (location, string, replicaSettings) {
	var rs replicaSettings
	var typ, rpath, rawURL string
	var urlNode *yaml.Node
	for _, p := range d.pairs(n, field) {
		switch p.key {
		case "type":
			typ, _ = d.str(p.val, p.field)
		case "path":
			rpath, _ = d.str(p.val, p.field)
		case "url":
			urlNode = p.val
			rawURL, _ = d.str(p.val, p.field)
		case "name":
			d.warnf(p.keyNode, p.field, "ignored (deprecated in Litestream)")
		default:
			if !d.setReplica(&rs, p) {
				d.ignore(p)
			}
		}
	}
	own := rs
	rs = rs.merged(defaults)
	loc := location{creds: Credentials{AccessKeyID: rs.accessKeyID, SecretAccessKey: rs.secretAccessKey}}
	if (loc.creds.AccessKeyID == "") != (loc.creds.SecretAccessKey == "") && len(d.errs) == 0 {
		d.errorf(resolve(n), field, "give both access-key-id and secret-access-key, or neither")
	}
	var u *url.URL
	if rawURL != "" {
		if redact.HasUserinfo(rawURL) {
			d.errorf(urlNode, field+".url", "credentials in the URL are not accepted; use access-key-id and secret-access-key or the environment")
			return loc, "", own
		}
		var err error
		if u, err = url.Parse(rawURL); err != nil || u.Scheme == "" {
			d.errorf(urlNode, field+".url", "not a URL (want s3://bucket/path or file:///path)")
			return loc, "", own
		}
		if u.User != nil {
			d.errorf(urlNode, field+".url", "credentials in the URL are not accepted; use access-key-id and secret-access-key or the environment")
			return loc, "", own
		}
		if rpath != "" {
			d.errorf(urlNode, field+".url", "give url or path, not both")
			return loc, "", own
		}
		typ = u.Scheme
	}
	if typ == "" {
		typ = "file"
	}
	switch typ {
	case "s3":
		loc, rpath = d.s3Replica(n, field, u, urlNode, rs, rpath, loc)
		return loc, rpath, own
	case "file":
		p := rpath
		if u != nil {
			p = u.Path
		}
		if !path.IsAbs(p) {
			d.errorf(resolve(n), field, "file replica: want an absolute path, got %q", p)
			return loc, "", own
		}
		loc.target = "file://"
		return loc, strings.Trim(path.Clean(p), "/"), own
	default:
		d.errorf(resolve(n), field, "replica type %q: walsync writes to s3 and file targets only", typ)
		return loc, "", own
	}
}

// s3Replica translates an s3 replica.
func (d *decoder) s3Replica(n *yaml.Node, field string, u *url.URL, urlNode *yaml.Node, rs replicaSettings, rpath string, loc location) (location, string) {
	bucket, endpoint, region, pathStyle := rs.bucket, rs.endpoint, rs.region, rs.forcePathStyle
	if u != nil {
		if rs.bucket != "" {
			d.errorf(urlNode, field+".url", "give url or bucket, not both")
			return loc, ""
		}
		bucket, rpath = u.Host, u.Path
		if u.Port() != "" || providerHost(bucket) {
			d.errorf(urlNode, field+".url", "host %q: walsync does not translate provider host names; give the bucket as host and the server as ?endpoint= (or bucket: and endpoint:)", bucket)
			return loc, ""
		}
		query := u.Query()
		for _, k := range slices.Sorted(maps.Keys(query)) {
			switch v := query.Get(k); k {
			case "endpoint":
				endpoint = v
			case "region":
				region = v
			case "forcePathStyle", "force-path-style":
				b := v == "true" || v == "1" || v == "t" || v == "yes"
				pathStyle = &b
			default:
				if !litestreamQuery[k] {
					// Not a name Litestream knows: it could be a secret.
					d.warnf(urlNode, field+".url", "a query parameter walsync does not know ignored (not shown)")
					continue
				}
				d.warnf(urlNode, field+".url", "query parameter %q ignored", k)
			}
		}
	}
	if bucket == "" {
		d.errorf(resolve(n), field, "s3 replica: no bucket (give url: s3://bucket/path, or bucket:)")
		return loc, ""
	}
	q := url.Values{}
	if endpoint != "" {
		endpoint = withScheme(endpoint)
		q.Set("endpoint", endpoint)
	}
	if region != "" {
		q.Set("region", region)
	}
	// Litestream addresses the bucket in the path whenever an endpoint is
	// given, unless told otherwise.
	if pathStyle != nil && *pathStyle || pathStyle == nil && endpoint != "" {
		q.Set("path-style", "true")
	}
	loc.target = (&url.URL{Scheme: "s3", Host: bucket, RawQuery: q.Encode()}).String()
	return loc, strings.Trim(path.Clean("/"+rpath), "/")
}

// withScheme returns endpoint with a scheme, as Litestream completes one
// without: http:// for a local or private host, https:// otherwise.
func withScheme(endpoint string) string {
	if strings.Contains(endpoint, "://") {
		return endpoint
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	local := host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") ||
		ip != nil && (ip.IsLoopback() || ip.IsPrivate())
	if local {
		return "http://" + endpoint
	}
	return "https://" + endpoint
}

// targetURL puts prefix (slash-separated) into the target URL base.
func targetURL(base, prefix string) string {
	if prefix == "." {
		prefix = ""
	}
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	if u.Scheme == "file" {
		return "file:///" + prefix
	}
	if prefix != "" {
		u.Path = "/" + prefix
	}
	return u.String()
}

// litestreamQuery are the query parameters of Litestream's s3 replica URLs
// that walsync ignores.
var litestreamQuery = map[string]bool{
	"skipVerify": true, "signPayload": true, "sign-payload": true, "signAcceptEncoding": true,
	"sign-accept-encoding": true, "requireContentMD5": true, "require-content-md5": true,
	"putObjectContentMD5": true, "put-object-content-md5": true, "storageClass": true,
	"storage-class": true, "partSize": true, "part-size": true, "concurrency": true,
}

// ignore warns about a key walsync does not use.
func (d *decoder) ignore(p pair) {
	if why, ok := litestreamIgnored[p.key]; ok {
		d.warnf(p.keyNode, p.field, "ignored: %s", why)
		return
	}
	d.warnf(p.keyNode, p.field, "ignored: not a Litestream v0.5 setting walsync knows")
}

// litestreamIgnored are the Litestream v0.5.18 keys walsync accepts without
// applying them, with the reason.
var litestreamIgnored = map[string]string{
	"l0-retention-check-interval": "walsync checks segment retention at each level-1 compaction",
	"retention":                   "walsync always applies snapshot.retention (in walsync's format, retention: 0 keeps everything)",
	"verify-compaction":           "walsync verifies every compacted file before it uploads it",
	"validation":                  "no periodic validation: every restore verifies each file it applies",
	"validation-interval":         "no periodic validation: every restore verifies each file it applies",
	"heartbeat-url":               "not supported yet",
	"heartbeat-interval":          "not supported yet",
	"mcp-addr":                    "no MCP server in walsync",
	"socket":                      "no control socket in walsync",
	"shutdown-sync-timeout":       "walsync flushes on SIGTERM for up to 30s",
	"shutdown-sync-interval":      "walsync flushes on SIGTERM for up to 30s",
	"shutdown-timeout":            "walsync flushes on SIGTERM for up to 30s",
	"max-sync-ltx-files":          "walsync uploads every pending segment",
	"auto-recover":                "walsync answers any discontinuity with a snapshot",
	"sign-payload":                "walsync signs every payload (SHA-256)",
	"sign-accept-encoding":        "not needed by walsync's S3 client",
	"require-content-md5":         "walsync sends SHA-256 checksums",
	"put-object-content-md5":      "walsync sends SHA-256 checksums",
	"skip-verify":                 "TLS is always verified; set AWS_CA_BUNDLE for a private CA",
	"storage-class":               "walsync uses the bucket's default storage class",
	"part-size":                   "use ?part-size= on the target URL",
	"concurrency":                 "walsync's --concurrency is process-wide",
	"meta-path":                   "walsync keeps no local metadata beside the database",
	"meta-dir":                    "walsync keeps no local metadata beside the database",
	"monitor-interval":            "walsync wakes on inotify events, it does not poll",
	"checkpoint-interval":         "walsync restarts the WAL by --checkpoint-frames",
	"busy-timeout":                "walsync takes no SQLite lock that needs one",
	"min-checkpoint-page-count":   "walsync restarts the WAL by --checkpoint-frames",
	"truncate-page-n":             "walsync restarts the WAL by --checkpoint-frames",
	"max-sync-wal-bytes":          "walsync splits long backlogs by itself",
	"source":                      "walsync does not log source positions",
	"account-name":                "Azure settings: walsync writes to S3 or files",
	"account-key":                 "Azure settings: walsync writes to S3 or files",
	"sas-token":                   "Azure settings: walsync writes to S3 or files",
	"host":                        "SFTP settings: walsync writes to S3 or files",
	"user":                        "SFTP settings: walsync writes to S3 or files",
	"password":                    "SFTP settings: walsync writes to S3 or files",
	"key-path":                    "SFTP settings: walsync writes to S3 or files",
	"concurrent-writes":           "SFTP settings: walsync writes to S3 or files",
	"host-key":                    "SFTP settings: walsync writes to S3 or files",
	"webdav-url":                  "WebDAV settings: walsync writes to S3 or files",
	"webdav-username":             "WebDAV settings: walsync writes to S3 or files",
	"webdav-password":             "WebDAV settings: walsync writes to S3 or files",
	"jwt":                         "NATS settings: walsync writes to S3 or files",
	"seed":                        "NATS settings: walsync writes to S3 or files",
	"creds":                       "NATS settings: walsync writes to S3 or files",
	"nkey":                        "NATS settings: walsync writes to S3 or files",
	"username":                    "NATS settings: walsync writes to S3 or files",
	"token":                       "NATS settings: walsync writes to S3 or files",
	"tls":                         "NATS settings: walsync writes to S3 or files",
	"root-cas":                    "NATS settings: walsync writes to S3 or files",
	"client-cert":                 "NATS settings: walsync writes to S3 or files",
	"client-key":                  "NATS settings: walsync writes to S3 or files",
	"max-reconnects":              "NATS settings: walsync writes to S3 or files",
	"reconnect-wait":              "NATS settings: walsync writes to S3 or files",
	"timeout":                     "NATS settings: walsync writes to S3 or files",
}
