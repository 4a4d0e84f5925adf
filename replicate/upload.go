package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// uploadPending uploads the captured segments in TXID order. The caller
// holds d.upMu but not d.mu: the network I/O happens without d.mu, so the
// gate can append segments meanwhile.
//
// While the target does not take uploads (degraded mode, backlog.go), what
// is captured goes to the backlog instead and the result is an
// *offlineError. Only the last call of a sync (last) tries the target
// again, once an attempt is due, uploading the backlog first: the local
// work of the sync (capture, hand-over) never waits for a failing target.
func (d *DB) uploadPending(ctx context.Context, last bool) error {
	if d.bl.offline() {
		due := d.tryNow || !time.Now().Before(d.bl.retry)
		if due && d.bl.n == 0 && d.pendingLen(ctx) == 0 {
			// Nothing kept (the spool overflowed): a cheap probe tells
			// whether the target is back, before any snapshot is taken.
			if err := d.probe(ctx); err != nil {
				return d.wentOffline(ctx, err)
			}
			d.backOnline()
			return nil
		}
		if !last || !due {
			return d.spoolPending(ctx)
		}
		if n, err := d.uploadBacklog(ctx); err != nil {
			if errors.Is(err, ErrExists) {
				return d.conflict(ctx, err)
			}
			return d.wentOffline(ctx, err)
		} else if n > 0 {
			d.backOnline()
		}
	}
	for {
		if err := d.mu.lock(ctx); err != nil {
			return err
		}
		if len(d.pending) == 0 {
			d.pending = nil
			d.mu.unlock()
			return nil
		}
		seg := d.pending[0]
		d.mu.unlock()

		err := d.put(ctx, seg)

		if lerr := d.mu.lock(context.WithoutCancel(ctx)); lerr != nil {
			return lerr
		}
		if errors.Is(err, errRawInvalid) {
			// A WAL copy that does not verify: its frames are gone from the
			// WAL (reset since), so the chain cannot go on. It and what was
			// captured after it are dropped; a snapshot takes its TXID.
			d.dropFrom(0)
			d.txid = seg.minTXID - 1
			d.discontinuity(fmt.Sprintf("%s (%v)", whyChain, err))
			d.mu.unlock()
			return nil
		}
		if err != nil {
			d.mu.unlock()
			if errors.Is(err, ErrExists) {
				return d.conflict(ctx, err)
			}
			return d.wentOffline(ctx, err)
		}
		if seg.file != "" {
			os.Remove(seg.file) // uploaded: the spooled copy is not needed
		}
		if d.bl.offline() {
			d.backOnline()
		}
		d.markDurable(seg.readAt)
		seg.close()
		d.pending[0] = nil
		d.pending = d.pending[1:]
		d.mu.unlock()
	}
}

// conflict handles a segment whose key another writer stored: what is
// captured and spooled is dropped and the target is read again.
func (d *DB) conflict(ctx context.Context, err error) error {
	if lerr := d.mu.lock(context.WithoutCancel(ctx)); lerr != nil {
		return lerr
	}
	defer d.mu.unlock()
	d.r.metrics.conflicts.Add(1)
	d.logger().Error("another writer uses this database's name in the target; re-reading it", "error", err)
	d.dropBacklog()
	d.dropPending()
	d.apply(evConflict, "")
	d.releasePin()
	return err
}

// markDurable records that every transaction committed before t is in
// the target. The caller holds d.mu.
func (d *DB) markDurable(t time.Time) {
	if t.IsZero() || !t.After(d.durableAt) {
		return
	}
	d.durableAt = t
	if d.durableCh != nil {
		close(d.durableCh)
		d.durableCh = nil
	}
}

// WaitDurable waits until every transaction committed to the database
// before t is durable in the target, without hastening the upload (see
// [Replicator.Sync] for that). It measures what an application actually
// waits for at a given sync interval.
func (d *DB) WaitDurable(ctx context.Context, t time.Time) error {
	for {
		if err := d.mu.lock(ctx); err != nil {
			return err
		}
		if !d.durableAt.Before(t) {
			d.mu.unlock()
			return nil
		}
		if d.durableCh == nil {
			d.durableCh = make(chan struct{})
		}
		ch := d.durableCh
		d.mu.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// put stores one segment or snapshot, encoding a raw WAL copy first (off
// the path that captured it; the caller does not hold d.mu).
func (d *DB) put(ctx context.Context, seg *segment) error {
	if err := d.encode(seg); err != nil {
		return err
	}
	rd, err := seg.data.Reader()
	if err != nil {
		return err
	}
	key := ltxKey(d.name, seg.level, seg.minTXID, seg.maxTXID)
	meta := map[string]string{MetaTimestamp: seg.ts.Format(time.RFC3339Nano)}
	if err := d.r.store.Put(ctx, key, rd, seg.data.Size(), meta); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	if seg.level == SegmentLevel {
		// A reader of its own: the one the upload read may still be
		// touched by the HTTP transport's goroutines.
		if copyRd, err := seg.data.Reader(); err == nil {
			d.r.comp.stageSegment(d, seg.minTXID, seg.maxTXID, copyRd, seg.data.Size())
		}
	}
	d.uploaded(seg.level, seg.maxTXID, seg.data.Size(), seg.readAt)
	return nil
}

// encode turns a raw WAL copy into its LTX file (the caller does not hold
// d.mu).
func (d *DB) encode(seg *segment) error {
	if seg.data == nil && seg.raw != nil {
		var decode func(io.ReaderAt) io.ReaderAt
		if d.app != nil && d.app.codec != nil {
			decode = d.app.codec.Reader
		}
		sp, err := seg.raw.encode(d.r.opts.SpoolDir, decode, seg.maxTXID, seg, d.storePage)
		if err != nil {
			return fmt.Errorf("encode segment %s: %w", seg.maxTXID, err)
		}
		seg.data = sp
		seg.raw.close()
		seg.raw = nil
	}
	if seg.data == nil {
		return fmt.Errorf("upload %s: %w", ltxKey(d.name, seg.level, seg.minTXID, seg.maxTXID), errNotEncoded)
	}
	return nil
}

// errNotEncoded is returned for a pending snapshot whose encoding has not
// finished; it cannot happen while syncs are serialised by upMu.
var errNotEncoded = errors.New("snapshot not encoded yet")

// dropFrom discards pending segments from index i on, with their spool
// files. The caller holds d.mu.
func (d *DB) dropFrom(i int) {
	for _, s := range d.pending[i:] {
		if s.file != "" {
			os.Remove(s.file)
		}
		s.close()
	}
	d.pending = d.pending[:i]
}

// dropPending discards captured segments that can no longer be uploaded.
func (d *DB) dropPending() {
	for _, s := range d.pending {
		s.close()
	}
	d.pending = nil
}
