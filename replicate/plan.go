package replicate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// Restore planning errors.
var (
	// ErrNoBackup is returned when the target holds no backup of a database.
	ErrNoBackup = errors.New("no backup found")

	// ErrNotRestorable is returned when the requested point in time or TXID
	// cannot be reached from the files in the target.
	ErrNotRestorable = errors.New("not restorable")
)

// maxLevel is the highest level listed when planning: levels 1..8 hold
// Litestream's compacted files, 9 its snapshots.
const maxLevel = SnapshotLevel

// listLTXFiles lists every LTX file of a database, all levels, ordered by
// level then TXID, with one LIST. Keys that are not well-formed LTX names of
// this database (other databases whose names extend this one's included,
// and keys outside the prefix that a broken backend might return) are
// ignored.
func listLTXFiles(ctx context.Context, store Storage, name string) ([]ltxFile, error) {
	var files []ltxFile
	prefix := name + "/"
	for obj, err := range store.List(ctx, prefix, "") {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		rest, ok := strings.CutPrefix(obj.Key, prefix)
		if !ok || len(rest) < 5 || rest[4] != '/' {
			continue
		}
		level, ok := parseLevel(rest[:4])
		if !ok {
			continue
		}
		f, err := parseLTXKey(prefix+rest[:5], obj.Key, level)
		if err != nil || (level == SnapshotLevel && f.minTXID != 1) {
			continue
		}
		f.size, f.modTime = obj.Size, obj.ModTime
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b ltxFile) int {
		if c := cmp.Compare(a.level, b.level); c != 0 {
			return c
		}
		return cmp.Compare(a.minTXID, b.minTXID)
	})
	return files, nil
}

// planTXID returns the files to apply to reach txid (0: the newest state):
// the newest snapshot at or before it, then a contiguous chain, taking at
// each step the file that reaches furthest (fewest files). It fails with
// ErrNotRestorable if txid is beyond the newest TXID or falls inside a
// compacted file.
func planTXID(files []ltxFile, txid ltx.TXID) ([]ltxFile, error) {
	if len(files) == 0 {
		return nil, ErrNoBackup
	}
	latest := slices.MaxFunc(files, func(a, b ltxFile) int { return cmp.Compare(a.maxTXID, b.maxTXID) }).maxTXID
	if txid == 0 {
		txid = latest
	} else if txid > latest {
		return nil, fmt.Errorf("%w: TXID %s is out of range (newest is %s)", ErrNotRestorable, txid, latest)
	}
	var snap *ltxFile
	for i, f := range files {
		if f.level == SnapshotLevel && f.maxTXID <= txid && (snap == nil || f.maxTXID > snap.maxTXID) {
			snap = &files[i]
		}
	}
	plan, cur := []ltxFile(nil), ltx.TXID(0)
	if snap != nil {
		plan, cur = append(plan, *snap), snap.maxTXID
	}
	for cur < txid {
		next, ok := nextFile(files, cur, txid, true)
		if !ok {
			break
		}
		plan, cur = append(plan, next), next.maxTXID
	}
	if cur != txid {
		if len(plan) == 0 {
			return nil, fmt.Errorf("%w: no snapshot at or before TXID %s", ErrNotRestorable, txid)
		}
		return nil, fmt.Errorf("%w: TXID %s is not a restore point (files stop at %s)", ErrNotRestorable, txid, cur)
	}
	if plan[0].minTXID != 1 {
		return nil, fmt.Errorf("%w: no snapshot at or before TXID %s", ErrNotRestorable, txid)
	}
	return plan, nil
}

// chainFrom returns the finest-grained contiguous chain of non-snapshot
// files after TXID start: at each step the file ending soonest, so that a
// point in time falls between as many restore points as possible.
func chainFrom(files []ltxFile, start ltx.TXID) []ltxFile {
	var chain []ltxFile
	cur := start
	for {
		next, ok := nextFile(files, cur, ^ltx.TXID(0), false)
		if !ok {
			return chain
		}
		chain, cur = append(chain, next), next.maxTXID
	}
}

// nextFile picks the non-snapshot file that continues a chain ending at cur
// (minTXID <= cur+1 < maxTXID+1, maxTXID <= limit): the one reaching
// furthest if far, else the one ending soonest.
func nextFile(files []ltxFile, cur, limit ltx.TXID, far bool) (ltxFile, bool) {
	var best ltxFile
	found := false
	for _, f := range files {
		if f.level == SnapshotLevel || f.minTXID > cur+1 || f.maxTXID <= cur || f.maxTXID > limit {
			continue
		}
		better := !found ||
			(far && f.maxTXID > best.maxTXID) ||
			(!far && f.maxTXID < best.maxTXID) ||
			(f.maxTXID == best.maxTXID && f.level < best.level)
		if better {
			best, found = f, true
		}
	}
	return best, found
}

// timestamps reads LTX header timestamps, caching them by key.
type timestamps struct {
	ctx   context.Context
	store Storage
	cache map[string]time.Time
}

func (t *timestamps) of(f ltxFile) (time.Time, error) {
	if ts, ok := t.cache[f.key]; ok {
		return ts, nil
	}
	hdr, err := fetchHeader(t.ctx, t.store, f.key)
	if err != nil {
		return time.Time{}, err
	}
	ts := time.UnixMilli(hdr.Timestamp).UTC()
	t.cache[f.key] = ts
	return ts, nil
}

// planTime returns the files to apply for the state as of ts. The finest
// chain after the newest snapshot created at or before ts finds the target:
// the newest restore point whose file was created at or before ts (the
// header of each snapshot and O(log n) chain headers are read). The plan is
// then the fewest files reaching exactly that TXID ([planTXID]), so that a
// point in a compacted day takes its compacted files, not every segment.
// Snapshots created after ts are left out: their state may be the same,
// but the result would report a creation time after ts.
func planTime(ctx context.Context, store Storage, files []ltxFile, ts time.Time) ([]ltxFile, error) {
	if len(files) == 0 {
		return nil, ErrNoBackup
	}
	tc := &timestamps{ctx: ctx, store: store, cache: make(map[string]time.Time)}
	var snap *ltxFile
	for i, f := range files {
		if f.level != SnapshotLevel || (snap != nil && f.maxTXID < snap.maxTXID) {
			continue
		}
		fts, err := tc.of(f)
		if err != nil {
			return nil, err
		}
		if !fts.After(ts) {
			snap = &files[i]
		}
	}
	if snap == nil {
		return nil, fmt.Errorf("%w: no snapshot at or before %s", ErrNotRestorable, ts.Format(time.RFC3339))
	}
	chain := chainFrom(files, snap.maxTXID)
	// Timestamps grow along the chain: find the first file after ts.
	var searchErr error
	n, _ := slices.BinarySearchFunc(chain, ts, func(f ltxFile, ts time.Time) int {
		fts, err := tc.of(f)
		if err != nil {
			searchErr = err
			return 0
		}
		if fts.After(ts) {
			return 1
		}
		return -1
	})
	if searchErr != nil {
		return nil, searchErr
	}
	target := snap.maxTXID
	if n > 0 {
		target = chain[n-1].maxTXID
	}
	if n == len(chain) {
		if err := checkGapBefore(tc, files, target, ts); err != nil {
			return nil, err
		}
	}
	// Every snapshot newer than snap was created after ts.
	usable := slices.DeleteFunc(slices.Clone(files), func(f ltxFile) bool {
		return f.level == SnapshotLevel && f.maxTXID > snap.maxTXID
	})
	return planTXID(usable, target)
}

// checkGapBefore refuses a point-in-time plan that ends at TXID end, the
// end of its chain, when the target holds a later file created at or
// before ts: the chain is broken before the requested time, and the state
// at end is not the state as of ts.
func checkGapBefore(tc *timestamps, files []ltxFile, end ltx.TXID, ts time.Time) error {
	var next *ltxFile
	for i, f := range files {
		if f.maxTXID > end && (next == nil || f.maxTXID < next.maxTXID) {
			next = &files[i]
		}
	}
	if next == nil {
		return nil
	}
	fts, err := tc.of(*next)
	if err != nil {
		return err
	}
	if !fts.After(ts) {
		return fmt.Errorf("%w: %s: gap after TXID %s: the chain breaks before %s", ErrNotRestorable, next.key, end, ts.Format(time.RFC3339))
	}
	return nil
}
