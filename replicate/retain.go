package replicate

import (
	"context"
	"fmt"
	"time"
)

// Retention (see docs/design.md, "Compaction and retention"): a restore
// point is the end of a file kept in the target. Inside the window of
// Options.Retention every restore point of the files kept stays
// restorable, and the window holds one at least every level-1 interval
// (one per sync for the last Options.L0Retention). Deletions only follow
// the upload of what supersedes the deleted files:
//
//   - a segment (level 0) goes once a level-1 file covers it and it is
//     older than L0Retention; the newest segment always stays, as the
//     next start resumes from it;
//   - a snapshot goes once a newer snapshot is older than the window
//     start (that one is the base every restore inside the window starts
//     from), and the files of every other level go once the base covers
//     them (they end at or before its TXID).
//
// The newest snapshot and everything after it are never deleted, so an
// idle database keeps its newest state forever; deletions run only for
// databases that uploaded something, so an idle one costs no request.

// enforceL0 deletes the segments of d that a level-1 file covers and that
// are older than L0Retention (l0 is the listing of level 0 the level-1
// compaction worked from, or nil), and schedules the next pass for those
// not old enough yet.
func (c *compactor) enforceL0(ctx context.Context, d *DB, l0 []ltxFile, now time.Time) error {
	keep := c.r.opts.L0Retention
	st, ok := c.state(d)
	if !ok || keep < 0 || c.levels() == 0 || !st.known[1] {
		c.update(d, func(st *compactState) { st.l0Due = time.Time{} })
		return nil
	}
	if l0 == nil {
		var err error
		if l0, err = listLevel(ctx, c.r.store, d.name, SegmentLevel, ""); err != nil {
			return err
		}
	}
	var newest ltxFile
	for _, f := range l0 {
		if f.maxTXID > newest.maxTXID {
			newest = f
		}
	}
	var del []string
	var next time.Time
	for _, f := range l0 {
		if f.maxTXID > st.top[1] || f.key == newest.key {
			continue
		}
		if expires := f.modTime.Add(keep); expires.After(now) {
			if next.IsZero() || expires.Before(next) {
				next = expires
			}
			continue
		}
		del = append(del, f.key)
	}
	if err := c.delete(ctx, d, del); err != nil {
		return err
	}
	c.update(d, func(st *compactState) { st.l0Due = next })
	return nil
}

// enforceRetention deletes the snapshots older than the base of the
// retention window and every other file the base covers.
func (c *compactor) enforceRetention(ctx context.Context, d *DB, now time.Time) error {
	keep := d.retention()
	if keep < 0 {
		return nil
	}
	files, err := listLTXFiles(ctx, c.r.store, d.name)
	if err != nil {
		return err
	}
	del := expired(files, now.Add(-keep))
	return c.delete(ctx, d, del)
}

// expired returns the keys of files that no restore point at or after
// windowStart needs: the base is the newest snapshot uploaded before
// windowStart (else the oldest snapshot); older snapshots go, and files
// of other levels ending at or before the base's TXID.
func expired(files []ltxFile, windowStart time.Time) []string {
	var base, oldest *ltxFile
	for i, f := range files {
		if f.level != SnapshotLevel {
			continue
		}
		if oldest == nil || f.maxTXID < oldest.maxTXID {
			oldest = &files[i]
		}
		if f.modTime.Before(windowStart) && (base == nil || f.maxTXID > base.maxTXID) {
			base = &files[i]
		}
	}
	if base == nil {
		base = oldest
	}
	if base == nil {
		return nil // no snapshot: nothing is covered
	}
	var del []string
	for _, f := range files {
		if f.key == base.key {
			continue
		}
		if (f.level == SnapshotLevel && f.maxTXID < base.maxTXID) ||
			(f.level != SnapshotLevel && f.maxTXID <= base.maxTXID) {
			del = append(del, f.key)
		}
	}
	return del
}

// delete removes keys of d in batches (the store sends one DeleteObjects
// request per 1,000 keys), unless d was removed meanwhile.
func (c *compactor) delete(ctx context.Context, d *DB, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, ok := c.state(d); !ok {
		return errCompactionGone
	}
	if err := c.r.store.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("delete %d files of %s: %w", len(keys), d.name, err)
	}
	c.r.metrics.deleted.Add(int64(len(keys)))
	d.debug("deleted", "files", len(keys), "first", keys[0])
	return nil
}
