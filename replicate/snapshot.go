package replicate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/walsync/walsync/internal/wal"

	"github.com/superfly/ltx"
)

// snapshot uploads a full copy of the database as it is after its last
// committed transaction, as a level-9 LTX file with the next TXID, and
// continues replication from the WAL position the copy ends at.
//
// Consistency without an SQLite connection: READ_LOCK(0) is held while the
// pages are read, so no checkpoint copies frames into the database file;
// the pin keeps the WAL from being restarted. The database file plus the
// committed frames of the current WAL generation are then exactly the
// state after the last commit frame read.
func (d *DB) snapshot(ctx context.Context, reason string) error {
	for try := 0; ; try++ {
		err := d.snapshotOnce(ctx, reason)
		if !errors.Is(err, errWALChanged) || try == 3 {
			return err
		}
	}
}

// errWALChanged means the WAL was restarted or truncated while a snapshot
// read it.
var errWALChanged = errors.New("the WAL changed while it was read")

func (d *DB) snapshotOnce(ctx context.Context, reason string) error {
	if d.app != nil {
		d.pin.openSHM(d.shmPath)
	}
	hadZero := d.pin.zero
	if d.pin.shm != nil {
		if err := retryBusy(ctx, d.pin.lockZero); err != nil {
			return fmt.Errorf("snapshot: wait for checkpoint: %w", err)
		}
		if !hadZero {
			defer d.pin.unlockZero()
		}
	}
	readAt := time.Now()
	file := d.pin.db
	var before fileStamp
	if file == nil {
		// Unpinned: no application has the WAL-index open, so nothing
		// writes the database; a stamp taken before and after proves it.
		var err error
		if before, err = stampOf(d.path); err != nil {
			return err
		}
		if file, err = os.Open(d.path); err != nil {
			return err
		}
		defer file.Close()
	}
	db := d.dbReader(file)
	dh, err := readDBHeader(db)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	var scan *walScan
	wf, err := d.openWAL()
	if err != nil {
		return err
	}
	if wf != nil { // else no generation yet: the database file is the whole state
		defer wf.f.Close()
		if scan, err = scanWAL(wf.r, wf.hdr, wf.hdr.Start(), 0, d.maxFrame(wf.hdr)); err != nil {
			return err
		}
	}

	txid := d.txid + 1
	ts := d.nextTimestamp()
	sp, err := newSpoolFor(d.r.opts.SpoolDir, fi.Size())
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	seg := &segment{level: SnapshotLevel, minTXID: 1, maxTXID: txid, ts: ts, data: sp, readAt: readAt}
	commit, err := encodeSnapshot(sp, db, fi.Size(), dh, scan, txid, ts, d.storePage)
	if err == nil && wf != nil && !wf.holds(scan) {
		err = errWALChanged
	}
	if err == nil && before != (fileStamp{}) {
		if after, serr := stampOf(d.path); serr != nil || after != before {
			err = errWALChanged
		}
	}
	if err != nil {
		seg.close()
		if wf != nil && !wf.holds(scan) {
			return errWALChanged // a read failure caused by the change
		}
		return fmt.Errorf("snapshot: %w", err)
	}
	seg.commit, seg.pages = commit, int(commit)
	// Captured: from here the snapshot is retried byte for byte.
	d.pending = append(d.pending, seg)
	d.txid, d.lastTS = txid, ts.UnixMilli()
	switch {
	case d.app != nil:
		// No pin: only a generation the VFS announces may follow.
		d.pos, d.newGenOK, d.app.closed, d.app.next = wal.Pos{}, false, true, nil
		if scan != nil {
			d.pos, d.app.closed = scan.end, false
		}
	case scan != nil:
		// After walsync's own checkpoint (slot released) the generation
		// read may still be restarted by the next writer.
		d.pos, d.newGenOK = scan.end, d.pin.slot == 0
	default:
		d.pos, d.newGenOK = wal.Pos{}, true
	}
	if before != (fileStamp{}) && d.newGenOK {
		d.stamp = before // unpinned: the next generation must not be preceded by a checkpoint
	}
	d.snapAt, d.snapReason = time.Now(), ""
	d.logger().Info("snapshot", "reason", reason, "txid", txid.String(), "pages", commit, "bytes", sp.Size())
	return nil
}

// snapshotKey returns the key of the snapshot covering TXIDs 1..txid.
func snapshotKey(name string, txid ltx.TXID) string { return ltxKey(name, SnapshotLevel, 1, txid) }

// Snapshot uploads a full snapshot of the database now, after uploading
// anything committed and not yet replicated.
func (d *DB) Snapshot(ctx context.Context) error {
	if err := d.sync(ctx); err != nil {
		return err
	}
	if err := d.upMu.lock(ctx); err != nil {
		return err
	}
	defer d.upMu.unlock()
	if err := d.mu.lock(ctx); err != nil {
		return err
	}
	err := d.snapshot(ctx, "requested")
	d.mu.unlock()
	if err != nil {
		return err
	}
	return d.uploadPending(ctx)
}
