package replicate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// DatabaseInfo describes the backup of one database in a target.
type DatabaseInfo struct {
	Name      string
	Snapshots int       // snapshot files
	Segments  int       // files at other levels
	Bytes     int64     // total size of its files
	FirstTXID ltx.TXID  // oldest restorable TXID (the oldest snapshot's)
	LastTXID  ltx.TXID  // newest restorable TXID
	FirstTime time.Time // creation time of the oldest snapshot
	LastTime  time.Time // creation time of the newest file
}

// ListDatabases returns every database with a backup in store, sorted by
// name, with its restorable range. It lists the whole target once and reads
// two LTX headers per database.
func ListDatabases(ctx context.Context, store Storage) ([]DatabaseInfo, error) {
	byName := make(map[string]*DatabaseInfo)
	newest := make(map[string]ltxFile)
	oldestSnap := make(map[string]ltxFile)
	for obj, err := range store.List(ctx, "", "") {
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		name, level, f, ok := parseObjectKey(obj.Key)
		if !ok {
			continue
		}
		info := byName[name]
		if info == nil {
			info = &DatabaseInfo{Name: name}
			byName[name] = info
		}
		info.Bytes += obj.Size
		if level == SnapshotLevel {
			info.Snapshots++
			if s, ok := oldestSnap[name]; !ok || f.maxTXID < s.maxTXID {
				oldestSnap[name] = f
			}
		} else {
			info.Segments++
		}
		if n, ok := newest[name]; !ok || f.maxTXID > n.maxTXID {
			newest[name] = f
		}
	}
	out := make([]DatabaseInfo, 0, len(byName))
	for name, info := range byName {
		n := newest[name]
		info.LastTXID = n.maxTXID
		var err error
		if info.LastTime, err = headerTime(ctx, store, n.key); err != nil {
			return nil, err
		}
		if s, ok := oldestSnap[name]; ok {
			info.FirstTXID = s.maxTXID
			if info.FirstTime, err = headerTime(ctx, store, s.key); err != nil {
				return nil, err
			}
		}
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b DatabaseInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ListNames returns the name of every database with a backup in store,
// sorted: the names ListDatabases returns, from one listing of the target
// without reading any object.
func ListNames(ctx context.Context, store Storage) ([]string, error) {
	seen := make(map[string]struct{})
	for obj, err := range store.List(ctx, "", "") {
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		if name, _, _, ok := parseObjectKey(obj.Key); ok {
			seen[name] = struct{}{}
		}
	}
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// parseObjectKey parses the key of an LTX object, <name>/<level>/<file>.ltx.
// It reports false for any other key, for a snapshot that does not start
// at TXID 1 and for a name [CleanName] refuses.
func parseObjectKey(key string) (name string, level int, f ltxFile, ok bool) {
	i := strings.LastIndexByte(key, '/')
	j := strings.LastIndexByte(key[:max(i, 0)], '/')
	if i < 0 || j <= 0 {
		return "", 0, ltxFile{}, false
	}
	name = key[:j]
	if level, ok = parseLevel(key[j+1 : i]); !ok {
		return "", 0, ltxFile{}, false
	}
	f, err := parseLTXKey(key[:i+1], key, level)
	if err != nil || (level == SnapshotLevel && f.minTXID != 1) {
		return "", 0, ltxFile{}, false
	}
	if _, err := CleanName(name); err != nil {
		return "", 0, ltxFile{}, false
	}
	return name, level, f, true
}

// headerTime returns the creation time in the LTX header of key. An object
// that exists but holds no valid header (junk under an LTX name) yields the
// zero time, so that one bad object does not break the listing of the whole
// target; restore refuses it by name. Other errors are returned.
func headerTime(ctx context.Context, store Storage, key string) (time.Time, error) {
	hdr, err := fetchHeader(ctx, store, key)
	if err == nil {
		return time.UnixMilli(hdr.Timestamp).UTC(), nil
	}
	if ctx.Err() != nil {
		return time.Time{}, err
	}
	if _, herr := store.Head(ctx, key); herr != nil {
		return time.Time{}, err
	}
	return time.Time{}, nil
}
