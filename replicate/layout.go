package replicate

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// Object layout, the one Litestream v0.5 writes and reads on S3:
//
//	<name>/<level as 4 hex digits>/<min TXID 16 hex>-<max TXID 16 hex>.ltx
//
// Level 0 holds one segment per sync, level 9 holds full snapshots whose
// minimum TXID is 1. See docs/format.md.
const (
	// SegmentLevel is the level of the segments written at every sync.
	SegmentLevel = 0
	// SnapshotLevel is the level of full-database snapshots.
	SnapshotLevel = 9
)

// ErrBadName is returned for a database name that cannot be used as a key
// prefix.
var ErrBadName = errors.New("invalid database name")

// levelPrefix returns the key prefix of one level of a database.
func levelPrefix(name string, level int) string {
	return name + "/" + fmt.Sprintf("%04x", level) + "/"
}

// ltxKey returns the key of an LTX file.
func ltxKey(name string, level int, minTXID, maxTXID ltx.TXID) string {
	return levelPrefix(name, level) + ltx.FormatFilename(minTXID, maxTXID)
}

// parseLevel parses a level element of a key: exactly 4 hex digits, no
// sign, at most maxLevel.
func parseLevel(s string) (int, bool) {
	if len(s) != 4 {
		return 0, false
	}
	level, err := strconv.ParseUint(s, 16, 8)
	if err != nil || level > maxLevel {
		return 0, false
	}
	return int(level), true
}

// ltxFile identifies one LTX object.
type ltxFile struct {
	level   int
	minTXID ltx.TXID
	maxTXID ltx.TXID
	size    int64
	key     string
	modTime time.Time // when the target stored it (from a listing; compaction and retention)
}

// parseLTXKey parses a key below a level prefix. It rejects anything that
// is not exactly "<16 hex>-<16 hex>.ltx" with min <= max.
func parseLTXKey(prefix, key string, level int) (ltxFile, error) {
	base, ok := strings.CutPrefix(key, prefix)
	if !ok || strings.Contains(base, "/") {
		return ltxFile{}, fmt.Errorf("unexpected key %q", key)
	}
	minTXID, maxTXID, err := ltx.ParseFilename(base)
	if err != nil || minTXID == 0 || minTXID > maxTXID || len(base) != 16+1+16+4 {
		return ltxFile{}, fmt.Errorf("unexpected key %q", key)
	}
	return ltxFile{level: level, minTXID: minTXID, maxTXID: maxTXID, key: key}, nil
}

// NameFromPath returns the default name of the database at an absolute
// path: the cleaned path without its leading slash
// ("/var/lib/app/t1/app.db" → "var/lib/app/t1/app.db").
func NameFromPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %q is not an absolute path", ErrBadName, p)
	}
	return CleanName(filepath.ToSlash(p))
}

// CleanName validates a database name and returns its canonical form:
// slash-separated, no leading or trailing slash, no empty, "." or ".."
// elements, no control characters.
func CleanName(name string) (string, error) {
	n := strings.Trim(path.Clean("/"+name), "/")
	if n == "" || n != strings.Trim(name, "/") {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for _, el := range strings.Split(n, "/") {
		if el == "." || el == ".." {
			return "", fmt.Errorf("%w: %q", ErrBadName, name)
		}
	}
	for _, r := range n {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "", fmt.Errorf("%w: %q contains %s", ErrBadName, name, strconv.QuoteRune(r))
		}
	}
	return n, nil
}
