package replicate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/walsync/walsync/internal/wal"

	"github.com/superfly/ltx"
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
	codec  PageCodec
	dir    string // durable spool: <db>-walsync/
	closed bool   // the replicated generation ended at a WAL reset, all captured
	// earlyReset: the WAL was reset before the position was read from the
	// target, so nothing could be captured: only a snapshot is safe.
	earlyReset bool
	next       *[2]uint32 // salts of the generation the VFS saw SQLite start, if any
}

// nextIs reports whether hdr starts the generation the VFS announced after
// the replicated one closed.
func (a *appState) nextIs(hdr wal.Header) bool {
	return a.closed && a.next != nil && a.next[0] == hdr.Salt1 && a.next[1] == hdr.Salt2
}

// AddInApp starts replicating a database that this process writes through
// the walsync VFS (package vfs), or returns it if it is already added. Its
// WAL is protected by the VFS rather than by locks: before SQLite may
// reset, truncate or delete the WAL, the VFS calls [DB.BeforeWALReset].
// Commits are signalled with [DB.NotifyWAL]; frames written by other processes
// are still noticed through inotify.
func (r *Replicator) AddInApp(ctx context.Context, path, name string, opts InAppOptions) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", path, err)
	}
	r.mu.Lock()
	d := r.byPath[abs]
	r.mu.Unlock()
	if d != nil {
		if d.app == nil {
			return nil, fmt.Errorf("add %s: already replicated by the watcher", abs)
		}
		return d, nil
	}
	return r.add(ctx, abs, name, &appState{codec: opts.Codec, dir: abs + "-walsync"})
}

// NotifyWAL tells the replicator that a transaction committed; the
// database is synced once its sync interval has passed. walEnd is the end
// of the last frame written to the WAL (0 if unknown): each time another
// urgentWALBytes have been written since the last urgent sync, the
// database is synced at once instead, so that what a WAL reset must
// capture and spool on the application's path (DB.BeforeWALReset) stays
// small.
func (d *DB) NotifyWAL(walEnd int64) {
	mark := d.urgentMark.Load()
	if walEnd < mark { // a new generation
		d.urgentMark.CompareAndSwap(mark, 0)
		mark = 0
	}
	if walEnd-mark >= urgentWALBytes && d.urgentMark.CompareAndSwap(mark, walEnd) {
		d.r.sched.notifyNow(d)
		return
	}
	d.r.sched.notify(d)
}

// urgentWALBytes is how much WAL an in-process writer may add before its
// database is synced without waiting for the interval (a quarter of
// SQLite's default auto-checkpoint of 1,000 4 KiB pages).
const urgentWALBytes = 1 << 20

// BeforeWALReset is called by an in-process VFS, with SQLite's WAL locks
// held, before SQLite resets, truncates or deletes the WAL. It writes every
// committed frame of the outgoing generation that is not yet uploaded into
// the local spool and fsyncs it, so that neither a checkpoint nor a crash
// loses it. next is the WAL header SQLite is about to write (nil for a
// truncate or delete); remembering its salts proves, even after a restart,
// that the new generation follows the old one without a gap.
//
// It never fails the caller: a problem becomes a snapshot at the next sync.
func (d *DB) BeforeWALReset(next []byte) {
	if d.app == nil {
		return
	}
	if err := d.mu.lock(context.Background()); err != nil {
		return
	}
	defer d.mu.unlock()
	defer d.r.sched.notify(d)
	if !d.opened || !d.resumed {
		d.earlyReset(next)
		return
	}
	if err := d.captureTail(); err != nil {
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
	// Every committed frame of the outgoing generation is spooled: it is
	// closed. Record that, and the salts of the generation SQLite starts
	// now if this is its header, so a restart can prove the chain.
	var salts [2]uint32
	if len(next) >= wal.HeaderSize {
		if hdr, err := wal.ParseHeader(next); err == nil {
			if d.pos.SameGen(hdr) {
				return // a header rewrite of the same generation
			}
			salts = [2]uint32{hdr.Salt1, hdr.Salt2}
		}
	}
	if err := d.app.writeNext(salts, d.txid); err != nil {
		d.discontinuity("record WAL generation failed: " + err.Error())
		return
	}
	d.app.closed = true
	if salts != ([2]uint32{}) {
		d.app.next = &salts
	}
}

// earlyReset handles a WAL reset before the position is read from the
// target (the first sync runs on a worker, off the application's open). An
// empty WAL loses nothing: the generation SQLite starts is recorded as
// following whatever the last record said. A WAL with committed frames
// cannot be captured without a position: the resume then takes a snapshot
// unless the target proves the frames were uploaded.
func (d *DB) earlyReset(next []byte) {
	if !d.opened {
		d.app.earlyReset = true
		return
	}
	wf, err := d.openWAL()
	if err == nil && wf != nil {
		defer wf.f.Close()
		scan, serr := scanWAL(wf.r, wf.hdr, wf.hdr.Start(), 0, d.maxFrame(wf.hdr))
		if serr != nil || !scan.empty() {
			d.app.earlyReset = true
			os.Remove(filepath.Join(d.app.dir, spoolNextName))
			return
		}
	} else if err != nil {
		d.app.earlyReset = true
		return
	}
	if len(next) < wal.HeaderSize {
		return
	}
	hdr, err := wal.ParseHeader(next)
	if err != nil {
		return
	}
	if _, after, ok := d.app.readNext(); ok {
		if err := d.app.writeNext([2]uint32{hdr.Salt1, hdr.Salt2}, after); err != nil {
			d.app.earlyReset = true
		}
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

// Spool files: <dir>/<min>-<max>.ltx for segments, <dir>/next for the
// last WAL reset seen by the VFS: the salts of the generation SQLite
// started (zero if not yet known) and the TXID the old one ended at, 16
// bytes.
const spoolNextName = "next"

// persist writes seg to the spool directory and fsyncs it; seg then reads
// from that file, which is removed once seg is uploaded.
func (a *appState) persist(seg *segment) error {
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return err
	}
	name := filepath.Join(a.dir, ltx.FormatFilename(seg.minTXID, seg.maxTXID))
	rd, err := seg.data.Reader()
	if err != nil {
		return err
	}
	if err := writeFileSync(name, rd); err != nil {
		return err
	}
	seg.file = name
	return syncDir(a.dir)
}

// writeNext records the announced generation durably.
func (a *appState) writeNext(salts [2]uint32, after ltx.TXID) error {
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return err
	}
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:], salts[0])
	binary.BigEndian.PutUint32(b[4:], salts[1])
	binary.BigEndian.PutUint64(b[8:], uint64(after))
	if err := writeFileSync(filepath.Join(a.dir, spoolNextName), strings.NewReader(string(b[:]))); err != nil {
		return err
	}
	return syncDir(a.dir)
}

// readNext returns the announced generation, if recorded.
func (a *appState) readNext() (salts [2]uint32, after ltx.TXID, ok bool) {
	b, err := os.ReadFile(filepath.Join(a.dir, spoolNextName))
	if err != nil || len(b) != 16 {
		return salts, 0, false
	}
	salts = [2]uint32{binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:])}
	return salts, ltx.TXID(binary.BigEndian.Uint64(b[8:])), true
}

// uploadSpool uploads segments spooled before a crash, in TXID order, and
// removes them. Files at or below TXID have been uploaded already.
func (d *DB) uploadSpool(ctx context.Context) error {
	ents, err := os.ReadDir(d.app.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	rs, err := loadRemoteState(ctx, d.r.store, d.name)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if minTXID, maxTXID, err := ltx.ParseFilename(e.Name()); err == nil && minTXID <= maxTXID {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // fixed-width hex: TXID order
	gap := false
	for _, n := range names {
		minTXID, maxTXID, _ := ltx.ParseFilename(n)
		path := filepath.Join(d.app.dir, n)
		if !gap && maxTXID > rs.last.maxTXID {
			if minTXID == rs.last.maxTXID+1 {
				if err := d.putFile(ctx, path, minTXID, maxTXID); err != nil {
					return err
				}
				rs.last.maxTXID = maxTXID
			} else {
				// Not contiguous with the target: this file and the ones
				// after it can never be applied (the resume takes a
				// snapshot), and must not be mistaken for later TXIDs.
				gap = true
			}
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	return nil
}

// putFile uploads one spooled segment file.
func (d *DB) putFile(ctx context.Context, path string, minTXID, maxTXID ltx.TXID) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, _, err := ltx.PeekHeader(f)
	if err != nil {
		return fmt.Errorf("spooled %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	key := ltxKey(d.name, SegmentLevel, minTXID, maxTXID)
	meta := map[string]string{MetaTimestamp: time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano)}
	if err := d.r.store.Put(ctx, key, f, fi.Size(), meta); err != nil {
		return fmt.Errorf("upload spooled %s: %w", key, err)
	}
	d.r.stats.segments.Add(1)
	return nil
}

// writeFileSync writes r to name through a temporary file, fsynced and
// renamed into place.
func writeFileSync(name string, r io.Reader) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
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

// resumeAfterReset is called when the WAL no longer holds the position the
// target records. If the VFS recorded a WAL reset right after that
// position, the old generation ended there with nothing lost, and the chain
// continues with the generation it announced (or the next one it announces).
func (d *DB) resumeAfterReset() bool {
	salts, after, ok := d.app.readNext()
	if !ok || after != d.txid {
		return false
	}
	d.app.closed = true
	if salts != ([2]uint32{}) {
		d.app.next = &salts
	}
	return true
}
