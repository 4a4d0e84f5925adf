package replicate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/inapp"
	"github.com/walsync/walsync/internal/wal"
)

// PageCodec translates between the bytes of a database's files on disk and
// the plaintext SQLite reads and writes, for an in-process VFS stack that
// transforms them (encryption, page checksums). See the vfs package.
type PageCodec interface {
	// Reader returns a reader of the plaintext of a file of the database
	// (its WAL or the database file) whose stored bytes r reads.
	Reader(r io.ReaderAt) io.ReaderAt

	// StorePage returns page pgno, given as SQLite wrote it, as the database
	// file stores it. It may reuse page.
	StorePage(pgno uint32, page []byte) ([]byte, error)
}

// InAppOptions configures a database written through an in-process VFS.
type InAppOptions struct {
	// Codec reads the database's files and encodes its pages for storage;
	// nil means the files are stored as they are.
	Codec PageCodec
}

// appState is the part of a DB that only in-app databases have. Their WAL
// is not pinned: the VFS calls BeforeWALReset before SQLite resets,
// truncates or deletes it, and walsync spools what it has not uploaded.
type appState struct {
	codec PageCodec
	dir   string     // durable spool: <db>-walsync/
	next  *[2]uint32 // salts of the generation the VFS saw SQLite start, if any
	// early: the WAL was reset before the position was read from the
	// target, with frames that could not be captured: only a snapshot is
	// safe.
	early    bool
	opens    int  // main-database handles open through the VFS
	released bool // the last handle closed: released once uploaded
	dead     bool // released: the VFS must add the database again
}

// nextIs reports whether hdr starts the generation the VFS announced.
func (a *appState) nextIs(hdr wal.Header) bool {
	return a.next != nil && a.next[0] == hdr.Salt1 && a.next[1] == hdr.Salt2
}

// expected describes the announced generation for a log line.
func (a *appState) expected() string {
	if a.next == nil {
		return "none announced"
	}
	return fmt.Sprintf("%08x-%08x", a.next[0], a.next[1])
}

// AddInApp is the entry point of package vfs: it starts replicating a
// database that this process writes through the walsync VFS, or returns it
// if it is already added, with the hooks the VFS calls (see
// internal/inapp). Its WAL is protected by the VFS rather than by locks.
// It does no network I/O: the first sync reads the target.
func (r *Replicator) AddInApp(ctx context.Context, path, name string, opts InAppOptions, _ inapp.Token) (*DB, inapp.Hooks, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("add %s: %w", path, err)
	}
	r.mu.Lock()
	d := r.byPath[abs]
	r.mu.Unlock()
	if d != nil {
		if d.app == nil {
			return nil, nil, fmt.Errorf("add %s: already replicated by the watcher", abs)
		}
		return d, appHooks{d}, nil
	}
	d, err = r.add(ctx, abs, name, &appState{codec: opts.Codec, dir: abs + "-walsync"}, false, DBOptions{})
	if err != nil {
		return nil, nil, err
	}
	return d, appHooks{d}, nil
}

// appHooks implements inapp.Hooks for one database.
type appHooks struct{ d *DB }

func (h appHooks) Committed(walEnd int64)     { h.d.committed(walEnd) }
func (h appHooks) BeforeWALReset(next []byte) { h.d.beforeWALReset(next) }
func (h appHooks) Opened() bool               { return h.d.appOpened() }
func (h appHooks) Closed()                    { h.d.appClosed() }

// committed tells the replicator that a transaction committed; the
// database is synced once its sync interval has passed. walEnd is the end
// of the last frame written to the WAL (0 if unknown): each time another
// Options.MaxSegmentBytes (64 MiB by default) have been written since the
// last urgent sync, the database is synced at once instead, which bounds
// what a WAL reset must copy on the application's path (beforeWALReset).
// The copy is raw (a memcpy through the page cache, about a millisecond
// per few MiB), so the bound is large: syncing more often would encode
// pages that the next transactions rewrite, and encode again what a reset
// captures while that sync runs (measured: 9 % less CPU without the 1-MiB
// urgent syncs of before, docs/vfs.md).
func (d *DB) committed(walEnd int64) {
	mark := d.urgentMark.Load()
	if walEnd < mark { // a new generation
		d.urgentMark.CompareAndSwap(mark, 0)
		mark = 0
	}
	if walEnd-mark >= d.r.opts.MaxSegmentBytes && d.urgentMark.CompareAndSwap(mark, walEnd) {
		d.r.sched.notifyNow(d)
		return
	}
	d.r.sched.notify(d)
}

// appOpened counts a main-database handle opened through the VFS.
func (d *DB) appOpened() bool {
	if err := d.mu.lock(context.Background()); err != nil {
		return false
	}
	defer d.mu.unlock()
	if d.app.dead {
		return false
	}
	d.app.opens++
	d.app.released = false
	return true
}

// appClosed counts a main-database handle closed; after the last one the
// database is released once everything captured is uploaded.
func (d *DB) appClosed() {
	if err := d.mu.lock(context.Background()); err != nil {
		return
	}
	if d.app.opens > 0 {
		d.app.opens--
	}
	last := d.app.opens == 0
	if last {
		d.app.released = true
	}
	d.mu.unlock()
	if last {
		d.r.sched.notify(d)
	}
}

// releasable reports whether an in-app database whose application closed
// it is fully uploaded with its WAL closed, and marks it released: the VFS
// adds it again if the application reopens it.
func (d *DB) releasable() bool {
	if d.app == nil || !d.mu.tryLock() {
		return false
	}
	defer d.mu.unlock()
	if !d.app.released || d.app.opens > 0 || len(d.pending) > 0 || (d.st != stateClosed && d.st != stateGone) {
		return false
	}
	d.app.dead = true
	return true
}

// beforeWALReset is called by the in-process VFS, with SQLite's WAL locks
// held, before SQLite resets, truncates or deletes the WAL: the evReset
// transition. It writes every committed frame of the outgoing generation
// that is not yet uploaded into the local spool and fsyncs it, so that
// neither a checkpoint nor a crash loses it. next is the WAL header SQLite
// is about to write (nil for a truncate or delete); remembering its salts
// proves, even after a restart, that the new generation follows the old
// one without a gap. After a truncate or delete, the database file's stamp
// is kept instead: if the file changes before the next generation starts,
// it was written outside the WAL (a rollback journal mode).
//
// It never fails the caller: a problem becomes a snapshot at the next sync.
func (d *DB) beforeWALReset(next []byte) {
	if err := d.mu.lock(context.Background()); err != nil {
		return
	}
	defer d.mu.unlock()
	defer d.r.sched.notify(d)
	var hdr *wal.Header
	if len(next) >= wal.HeaderSize {
		if h, err := wal.ParseHeader(next); err == nil {
			hdr = &h
		}
	}
	if hdr != nil && !d.pos.IsZero() && d.pos.SameGen(*hdr) {
		return // a header rewrite of the same generation
	}
	switch d.st {
	case stateNew:
		d.earlyReset(hdr)
		return
	case stateClosed:
		if d.app.next == nil {
			d.announce(hdr)
			return
		}
		if !d.adoptAnnounced() {
			// The generation SQLite announced is not in the WAL: a
			// connection that does not use the VFS reset it, with frames
			// walsync never saw.
			d.discontinuity(fmt.Sprintf("%s (expected %s)", whyRestarted, d.app.expected()))
			return
		}
		// The announced generation, not yet read by a sync, is being
		// reset in turn: it is captured whole below.
	case stateFollowing, stateHandedOver:
	default:
		return // Broken or Gone: the snapshot reads whatever is there
	}
	if err := d.captureRawTail(); errors.Is(err, errOtherGeneration) {
		// Reset without the gate (a connection that does not use the
		// VFS): the frames after the replicated position are gone.
		d.discontinuity(whyRestarted + " without the VFS")
		return
	} else if err != nil {
		d.discontinuity("capture before WAL reset failed: " + err.Error())
		return
	}
	// The reset destroys the frames of every segment not yet uploaded,
	// those captured earlier included: spool them all.
	for _, seg := range d.pending {
		if seg.file != "" || seg.level == SnapshotLevel {
			continue
		}
		if err := d.app.persist(seg); err != nil {
			d.discontinuity("spool before WAL reset failed: " + err.Error())
			return
		}
	}
	rec := closedRecord{After: d.txid, Gen: [2]uint32{d.pos.Salt1, d.pos.Salt2}}
	if hdr != nil {
		rec.Next = [2]uint32{hdr.Salt1, hdr.Salt2}
	} else {
		rec.Stamp, _ = stampOf(d.path)
	}
	if err := writeRecord(d.app.dir, rec); err != nil {
		d.discontinuity("record WAL generation failed: " + err.Error())
		return
	}
	d.apply(evReset, "")
	d.app.next, d.stamp = nil, rec.Stamp
	if hdr != nil {
		d.app.next = &rec.Next
	}
}

// adoptAnnounced makes the generation SQLite announced, if the WAL holds
// it, the one being captured (Closed → Following on evNewGen). The caller
// holds d.mu.
func (d *DB) adoptAnnounced() bool {
	if d.app.next == nil {
		return false
	}
	wf, err := d.openWAL()
	if err != nil || wf == nil {
		return false
	}
	defer wf.f.Close()
	if !d.app.nextIs(wf.hdr) {
		return false
	}
	d.apply(evNewGen, "")
	d.pos, d.app.next = wf.hdr.Start(), nil
	return true
}

// announce records, for a database whose WAL is closed, the generation
// SQLite starts now. After a truncate or delete, it starts the chain again
// only over an unchanged database file.
func (d *DB) announce(hdr *wal.Header) {
	if hdr == nil {
		return // a truncate or delete of a WAL already closed
	}
	if d.app.next == nil && d.stamp != (fileStamp{}) {
		if cur, err := stampOf(d.path); err != nil || cur != d.stamp {
			d.apply(evDBChanged, "")
			return
		}
	}
	salts := [2]uint32{hdr.Salt1, hdr.Salt2}
	rec := closedRecord{After: d.txid, Gen: [2]uint32{d.pos.Salt1, d.pos.Salt2}, Next: salts}
	if err := writeRecord(d.app.dir, rec); err != nil {
		d.discontinuity("record WAL generation failed: " + err.Error())
		return
	}
	d.app.next, d.stamp = &salts, fileStamp{}
}

// earlyReset handles a WAL reset before the position is read from the
// target (the first sync runs on a worker, off the application's open). An
// empty WAL loses nothing: the generation SQLite starts is recorded as
// following whatever the last record said. A WAL with committed frames
// cannot be captured without a position: the resume then takes a snapshot
// unless the target proves the frames were uploaded.
func (d *DB) earlyReset(hdr *wal.Header) {
	wf, err := d.openWAL()
	if err == nil && wf != nil {
		defer wf.f.Close()
		scan, serr := scanWAL(wf.r, wf.hdr, wf.hdr.Start(), 0, d.maxFrame(wf.hdr))
		if serr != nil || !scan.empty() {
			d.app.early = true
			removeRecord(d.app.dir)
			return
		}
	} else if err != nil && !errors.Is(err, wal.ErrHeader) {
		d.app.early = true
		return
	}
	if hdr == nil {
		return
	}
	rec, ok := readRecord(d.app.dir)
	if !ok {
		return
	}
	if rec.Next == ([2]uint32{}) && rec.Stamp != (fileStamp{}) {
		if cur, err := stampOf(d.path); err != nil || cur != rec.Stamp {
			d.app.early = true
			return
		}
	}
	rec.Next, rec.Stamp = [2]uint32{hdr.Salt1, hdr.Salt2}, fileStamp{}
	if err := writeRecord(d.app.dir, rec); err != nil {
		d.app.early = true
	}
}

// dbReader returns a reader of the database file's plaintext (of f, or
// of the pinned descriptor if f is nil).
func (d *DB) dbReader(f ...*os.File) io.ReaderAt {
	db := d.pin.db
	if len(f) > 0 {
		db = f[0]
	}
	if d.app != nil && d.app.codec != nil {
		return d.app.codec.Reader(db)
	}
	return db
}

// storePage encodes a page for storage (nil for watched databases).
func (d *DB) storePage(pgno uint32, page []byte) ([]byte, error) {
	if d.app == nil || d.app.codec == nil {
		return page, nil
	}
	return d.app.codec.StorePage(pgno, page)
}

// persist writes seg to the spool directory; seg then reads from that
// file, which is removed once seg is uploaded. Spool files are
// <dir>/<min>-<max>.ltx. They are not fsynced: the gate that writes them
// is on the application's path, and after a power loss a missing or torn
// spool file (uploadSpool checks each) only costs a snapshot, the frames
// being in the database file by then (SQLite syncs it before a reset).
func (a *appState) persist(seg *segment) error {
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return err
	}
	name := filepath.Join(a.dir, ltx.FormatFilename(seg.minTXID, seg.maxTXID))
	rd, err := seg.data.Reader()
	if err != nil {
		return err
	}
	if err := writeFile(name, rd); err != nil {
		return err
	}
	seg.file = name
	return nil
}

// uploadSpool uploads segments spooled before a crash, in TXID order, and
// removes them. Files at or below the target's newest TXID were uploaded
// already. Each is checked before it is uploaded (an LTX file is decoded
// whole, a raw WAL copy must end where it records): after a power loss a
// spool file may be missing or torn, since the gate does not fsync; such a
// file and every one after it are dropped, and the resume then takes a
// snapshot because the target does not reach the closed generation.
func (d *DB) uploadSpool(ctx context.Context) error {
	ents, err := os.ReadDir(d.app.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	rs, err := loadRemoteState(ctx, d.r.store, d.name, nil)
	if err != nil {
		return err
	}
	type spooled struct {
		name             string
		minTXID, maxTXID ltx.TXID
	}
	var files []spooled
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), rawExt)
		if !ok {
			base = e.Name()
		}
		if minTXID, maxTXID, err := ltx.ParseFilename(base + map[bool]string{true: ".ltx", false: ""}[ok]); err == nil && minTXID <= maxTXID {
			files = append(files, spooled{e.Name(), minTXID, maxTXID})
		}
	}
	slices.SortFunc(files, func(a, b spooled) int { return cmp.Compare(a.minTXID, b.minTXID) })
	gap := false
	for _, f := range files {
		path := filepath.Join(d.app.dir, f.name)
		if !gap && f.maxTXID > rs.last.maxTXID {
			if f.minTXID != rs.last.maxTXID+1 {
				// Not contiguous with the target: this file and the ones
				// after it can never be applied (the resume takes a
				// snapshot), and must not be mistaken for later TXIDs.
				gap = true
			} else if err := d.putSpooled(ctx, path, f.minTXID, f.maxTXID); err != nil {
				if !errors.Is(err, errSpoolDamaged) {
					return err
				}
				d.logger().Warn("spooled segment damaged, dropped", "file", path, "error", err)
				gap = true
			} else {
				rs.last.maxTXID = f.maxTXID
			}
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	return nil
}

// errSpoolDamaged marks a spool file that does not hold what it should.
var errSpoolDamaged = errors.New("spool file damaged")

// putSpooled checks and uploads one spooled segment file: an LTX file, or
// a raw WAL copy encoded now.
func (d *DB) putSpooled(ctx context.Context, path string, minTXID, maxTXID ltx.TXID) error {
	var rd io.ReadSeeker
	var size int64
	var ts time.Time
	if strings.HasSuffix(path, rawExt) {
		t, err := openRawTail(path)
		if err != nil {
			return fmt.Errorf("%w: %w", errSpoolDamaged, err)
		}
		defer t.close()
		ts = time.UnixMilli(t.ts).UTC()
		var decode func(io.ReaderAt) io.ReaderAt
		if d.app.codec != nil {
			decode = d.app.codec.Reader
		}
		sp, err := t.encode(d.r.opts.SpoolDir, decode, maxTXID, &segment{ts: ts}, d.storePage)
		if err != nil {
			return fmt.Errorf("%w: %w", errSpoolDamaged, err)
		}
		defer sp.Close()
		if rd, err = sp.Reader(); err != nil {
			return err
		}
		size = sp.Size()
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		dec := ltx.NewDecoder(f)
		if err := dec.Verify(); err != nil {
			return fmt.Errorf("%w: %w", errSpoolDamaged, err)
		}
		ts = time.UnixMilli(dec.Header().Timestamp).UTC()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		rd, size = f, fi.Size()
	}
	key := ltxKey(d.name, SegmentLevel, minTXID, maxTXID)
	meta := map[string]string{MetaTimestamp: ts.Format(time.RFC3339Nano)}
	if err := d.r.store.Put(ctx, key, rd, size, meta); err != nil {
		return fmt.Errorf("upload spooled %s: %w", key, err)
	}
	d.uploaded(SegmentLevel, maxTXID, size, time.Time{})
	return nil
}

// writeFile writes r to name through a temporary file renamed into place
// (not fsynced: see persist and writeRecord).
func writeFile(name string, r io.Reader) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
