package replicate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/wal"
)

// maxTorn is how many consecutive looks may find the WAL header invalid
// (SQLite writing it at that moment) before it counts as rewritten.
const maxTorn = 3

// maxRecheck is how many syncs in a row look again for a commit frame
// written beyond the WAL-index's last commit (SQLite updates the index just
// after writing the frame). A writer that died in between leaves such a
// frame for good; it is never committed, and never captured.
const maxRecheck = 3

// observe opens the WAL and classifies what it holds relative to the
// replicated position. The returned file, if not nil, must be closed.
func (d *DB) observe() (*walFile, event, string, error) {
	wf, err := d.openWAL()
	if errors.Is(err, wal.ErrHeader) {
		d.torn++
		if d.torn < maxTorn {
			return nil, evTorn, "", nil
		}
		return nil, evNoWAL, "", nil
	} else if err != nil {
		return nil, 0, "", err
	}
	d.torn = 0
	if wf == nil {
		return nil, evNoWAL, "", nil
	}
	hdr := wf.hdr
	switch {
	case d.pos.SameGen(hdr) && !d.pos.IsZero():
		if wf.size < d.pos.Offset {
			return wf, evShort, "", nil
		}
		return wf, evCommits, "", nil
	case d.app != nil && d.st == stateClosed && !d.app.nextIs(hdr):
		// In-app, every generation SQLite starts is announced by the VFS
		// before its header is written: another one was not started here.
		return wf, evUnproven, fmt.Sprintf("%s (salt %08x-%08x, expected %s)", whyRestarted, hdr.Salt1, hdr.Salt2, d.app.expected()), nil
	case d.st == stateFollowing:
		return wf, evNewGen, fmt.Sprintf("%s (salt %08x-%08x, expected %08x-%08x)", whyRestarted,
			hdr.Salt1, hdr.Salt2, d.pos.Salt1, d.pos.Salt2), nil
	}
	return wf, evNewGen, "", nil
}

// capturePlan is a capture decided under d.mu, run without it (the scan
// and the LZ4 encoding of a large transaction take a while, and the in-app
// reset gate must not wait for them), and committed under d.mu again if
// nothing was captured meanwhile.
type capturePlan struct {
	wf      *walFile  // the WAL, open
	st      state     // state when planned
	pos     wal.Pos   // position when planned
	txid    ltx.TXID  // the segment's TXID
	ts      time.Time // the segment's timestamp
	mxFrame uint32    // the WAL-index's last commit frame (0: none)
	readAt  time.Time // every commit acknowledged before it is in the WAL read

	scan *walScan // set by run
	seg  *segment // set by run
	err  error    // set by run
}

// capture takes the transition for what the WAL holds relative to the
// replicated position and, if there may be commits to capture, returns the
// plan to capture them (at most MaxSegmentBytes of them). The caller holds
// d.mu.
func (d *DB) capture(readAt time.Time) (*capturePlan, error) {
	wf, ev, detail, err := d.observe()
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if wf != nil && !keep {
			wf.f.Close()
		}
	}()
	s := d.apply(ev, detail)
	switch s.act {
	case actRetry:
		d.unsure = true
		d.r.sched.notify(d)
		return nil, nil
	case actAdopt:
		d.pos = wf.hdr.Start()
		d.stamp = fileStamp{}
		if d.app != nil {
			d.app.next = nil
		}
		if err := d.retake(); err != nil {
			return nil, err
		}
	case actRetake:
		if err := d.retake(); err != nil {
			return nil, err
		}
	case actCapture:
	default:
		return nil, nil
	}
	keep = true
	return &capturePlan{wf: wf, st: d.st, pos: d.pos, txid: d.txid + 1, ts: d.nextTimestamp(),
		mxFrame: d.maxFrame(wf.hdr), readAt: readAt}, nil
}

// run scans the WAL from the planned position and encodes what it holds,
// without d.mu.
func (p *capturePlan) run(d *DB) {
	p.scan, p.err = scanWAL(p.wf.r, p.wf.hdr, p.pos, d.r.opts.MaxSegmentBytes, p.mxFrame)
	if p.err != nil || p.scan.empty() {
		return
	}
	if h := d.r.testHooks.afterScan; h != nil {
		h()
	}
	sp, err := newSpoolFor(d.r.opts.SpoolDir, int64(len(p.scan.pages))*int64(p.wf.hdr.PageSize))
	if err == nil {
		if err = encodeSegment(sp, p.scan, p.txid, p.ts, d.storePage); err != nil {
			sp.Close()
		}
	}
	if err != nil {
		p.err = fmt.Errorf("encode segment %s: %w", p.txid, err)
		return
	}
	p.seg = &segment{level: SegmentLevel, minTXID: p.txid, maxTXID: p.txid, ts: p.ts, data: sp,
		commit: p.scan.commit, pages: len(p.scan.pages)}
}

// finish commits what run captured, or drops it if the database moved on
// meanwhile (an in-app reset captured the same frames). It reports whether
// it captured anything and, if so, whether that is every transaction
// committed before the plan's readAt (false: MaxSegmentBytes cut it
// short). The caller holds d.mu.
func (p *capturePlan) finish(d *DB) (captured, whole bool, err error) {
	defer p.wf.f.Close()
	drop := func() {
		if p.seg != nil {
			p.seg.close()
		}
	}
	if p.err != nil {
		drop()
		return false, false, p.err
	}
	if d.st != p.st || d.pos != p.pos || d.txid+1 != p.txid {
		drop() // the gate captured these frames itself: look again
		return false, false, errMovedOn
	}
	scan, wf := p.scan, p.wf
	if n := framesBefore(wf.hdr, scan.end); p.mxFrame > 0 && !scan.full && !scan.ahead && n < int64(p.mxFrame) && wf.holds(scan) {
		// Frames the WAL-index calls committed (so complete: SQLite adds
		// them to the index after writing them) do not verify: the chain
		// is broken inside committed data. A read can also be torn, when
		// an encrypting VFS rewrites the block a committed frame shares
		// with the next one: only a break seen three times in a row counts.
		drop()
		if d.short++; d.short < maxTorn {
			d.unsure = true
			d.r.sched.notify(d)
			return false, false, nil
		}
		d.apply(evChainShort, fmt.Sprintf("%s (frame %d of %d)", whyChain, n+1, p.mxFrame))
		return false, false, nil
	}
	d.short = 0
	if scan.ahead && d.recheck < maxRecheck {
		// A commit frame is written but the WAL-index does not include it
		// yet: SQLite is committing it now. No further write may come to
		// wake the inotify watch, so look again at the next sync.
		d.recheck++
		d.unsure = true
		d.r.sched.notify(d)
	} else if !scan.ahead {
		d.recheck = 0
	}
	if p.seg == nil {
		return false, false, nil
	}
	if !wf.holds(scan) {
		// Restarted or truncated while the pages were read (possible
		// between an in-app gate and the reset it guards): read again.
		drop()
		d.unsure = true
		d.r.sched.notify(d)
		return false, false, nil
	}
	// Captured: the segment is retried byte for byte until it is durable,
	// so a PUT that timed out but was stored is recognised, not rewritten.
	seg := p.seg
	if !scan.full {
		seg.readAt = p.readAt // else not every commit before readAt is in it
	}
	d.lastActive = p.readAt
	d.pending = append(d.pending, seg)
	d.debug("captured", "txid", seg.maxTXID.String(), "salt1", scan.hdr.Salt1, "from", scan.from.Offset, "to", scan.end.Offset, "commit", scan.commit)
	d.txid, d.pos, d.lastTS = seg.maxTXID, scan.end, seg.ts.UnixMilli()
	return true, !scan.full, nil
}

// errMovedOn means a capture run without d.mu found the database moved on
// (the in-app gate captured the same frames): it is planned again.
var errMovedOn = errors.New("captured meanwhile")

// framesBefore returns the number of frames before pos in the generation
// hdr describes.
func framesBefore(hdr wal.Header, pos wal.Pos) int64 {
	if pos.Offset < wal.HeaderSize {
		return 0
	}
	return (pos.Offset - wal.HeaderSize) / hdr.FrameSize()
}

// retake ends a hand-over on the watch path: a read-mark slot pins the
// generation again (so checkpoints can copy its new frames while it cannot
// be restarted), then READ_LOCK(0) is released.
func (d *DB) retake() error {
	if d.app != nil || d.pin.shm == nil || d.pin.slot != 0 {
		return nil
	}
	if err := d.pin.lockSlot(); err != nil {
		if errors.Is(err, errLockBusy) {
			return nil // READ_LOCK(0) still pins; try again next time
		}
		return err
	}
	return d.pin.unlockZero()
}

// maxFrame returns the WAL-index's last commit frame if it describes the
// generation hdr, else 0 (no limit: the checksum chain alone decides).
func (d *DB) maxFrame(hdr wal.Header) uint32 {
	if st, ok := d.pin.state(); ok && st.salt1 == hdr.Salt1 && st.salt2 == hdr.Salt2 && st.mxFrame > 0 {
		return st.mxFrame
	}
	return 0
}

// nextTimestamp returns the current time, never earlier than the timestamp
// of the previous file so that timestamps grow with TXIDs.
func (d *DB) nextTimestamp() time.Time {
	now := time.Now().UTC()
	if ms := now.UnixMilli(); ms < d.lastTS {
		return time.UnixMilli(d.lastTS).UTC()
	}
	return now
}

// walFile is an open WAL with a valid header.
type walFile struct {
	f    *os.File
	r    io.ReaderAt // the plaintext: f, or f decoded by an in-app codec
	hdr  wal.Header
	size int64
}

// holds reports whether the WAL still holds the generation and frames scan
// read: its header is unchanged (a restart rewrites it first) and it is not
// shorter. Pages are read twice, during the scan (checksummed) and while
// encoding (not), so an encoder checks this after reading them.
func (w *walFile) holds(scan *walScan) bool {
	var b [wal.HeaderSize]byte
	if _, err := w.r.ReadAt(b[:], 0); err != nil {
		return false
	}
	hdr, err := wal.ParseHeader(b[:])
	if err != nil || hdr != scan.hdr {
		return false
	}
	fi, err := w.f.Stat()
	return err == nil && fi.Size() >= scan.end.Offset
}

// openWAL opens the database's WAL, decoded by the in-app codec if there is
// one. It returns nil, nil if there is no WAL or it is shorter than a
// header, and an error matching wal.ErrHeader if its header is invalid.
func (d *DB) openWAL() (*walFile, error) {
	if d.app != nil && d.app.codec != nil {
		return openWALWith(d.walPath, d.app.codec.Reader)
	}
	return openWALWith(d.walPath, nil)
}

// openWALWith opens the WAL at path, reading through decode (nil: the file
// as is).
func openWALWith(path string, decode func(io.ReaderAt) io.ReaderAt) (*walFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() < wal.HeaderSize {
		f.Close()
		return nil, nil // empty: SQLite has not written a header yet
	}
	var r io.ReaderAt = f
	if decode != nil {
		r = decode(f)
	}
	rd, err := wal.NewReader(r)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &walFile{f: f, r: r, hdr: rd.Header(), size: fi.Size()}, nil
}
