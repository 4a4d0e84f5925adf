package replicate

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// DBOptions are one database's overrides of [Options]. Zero values keep the
// Replicator's.
type DBOptions struct {
	// SyncInterval overrides Options.SyncInterval for this database;
	// [SyncImmediately] uploads at once.
	SyncInterval time.Duration

	// SnapshotInterval overrides Options.SnapshotInterval.
	SnapshotInterval time.Duration

	// Retention overrides Options.Retention; negative keeps everything.
	Retention time.Duration
}

// AddWith is [Replicator.Add] with overrides of the Replicator's options
// for this database.
func (r *Replicator) AddWith(ctx context.Context, path, name string, o DBOptions) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", path, err)
	}
	return r.add(ctx, abs, name, nil, false, o)
}

// WatchDirWith is [Replicator.WatchDir] with overrides of the Replicator's
// options for every database under dir.
func (r *Replicator) WatchDirWith(ctx context.Context, dir, pattern string, o DBOptions) error {
	return r.watchDir(ctx, dir, pattern, o)
}

// syncInterval returns how long d's changes are gathered (0: none).
func (s *scheduler) syncInterval(d *DB) time.Duration {
	if v := d.opts.SyncInterval; v != 0 {
		return max(v, 0)
	}
	return s.interval
}

// retention returns how long d's restore points are kept (negative:
// forever).
func (d *DB) retention() time.Duration {
	if v := d.opts.Retention; v != 0 {
		return v
	}
	return d.r.opts.Retention
}

// snapshotInterval returns how often d gets a full snapshot while active.
func (d *DB) snapshotInterval() time.Duration {
	if v := d.opts.SnapshotInterval; v > 0 {
		return v
	}
	return d.r.opts.SnapshotInterval
}
