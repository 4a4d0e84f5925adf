package replicate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/wal"
)

// A raw tail is the committed frames of a WAL that is about to be reset,
// truncated or deleted (or handed over under the WAL write lock), copied
// byte for byte instead of encoded: the copy runs on the application's path
// (the in-app gate) or with writers locked out (the hand-over), and
// copying is several times cheaper than LZ4 and CRC-64. It becomes an LTX
// segment when it is uploaded. In-app, the copy is the durable spool file
// itself: <dir>/<txid>-<txid>.wal.
//
// A raw file holds a 64-byte header, then the WAL's header block (its
// first rawAlign bytes, which hold the WAL header), then the WAL from
// from.Offset rounded down to rawAlign up to end.Offset rounded up (or the
// WAL's end). Keeping whole
// aligned blocks lets an encrypting codec (Adiantum, XTS: the tweak is the
// file offset) decrypt the copy with the WAL's offsets.
//
//	offset size field
//	0      8    magic "walsraw1"
//	8      8    from.Offset    (the first frame captured)
//	16     4,4  from.Checksum1, from.Checksum2 (running checksum before it)
//	24     8    end.Offset     (after the last commit frame)
//	32     4,4  end.Checksum1, end.Checksum2
//	40     4    commit         (database size in pages after the last commit)
//	44     8    timestamp      (ms, the segment's)
//	52     12   reserved, zero
const (
	rawMagic     = "walsraw1"
	rawHeaderLen = 64
	rawAlign     = 4096
	rawExt       = ".wal"
)

// errRawInvalid means a raw copy does not verify: the frames the WAL-index
// called committed are not a valid checksum chain (or the copy is torn).
var errRawInvalid = errors.New("raw tail does not verify")

// errOtherGeneration means the WAL no longer holds the replicated
// generation where a tail was to be captured.
var errOtherGeneration = errors.New("the WAL holds another generation")

// rawTail describes a raw copy.
type rawTail struct {
	hdr       wal.Header
	from, end wal.Pos
	commit    uint32
	ts        int64    // the segment's timestamp, ms
	path      string   // the copy's file; "" for an unlinked temporary file
	f         *os.File // open copy
}

// bodyStart is the WAL offset of the first copied byte after the header
// block.
func (t *rawTail) bodyStart() int64 { return t.from.Offset / rawAlign * rawAlign }

// ReadAt reads the WAL at off from the copy.
func (t *rawTail) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for len(p) > 0 {
		var fileOff, avail int64
		switch {
		case off < rawAlign:
			fileOff, avail = rawHeaderLen+off, rawAlign-off
		case off >= t.bodyStart():
			fileOff, avail = rawHeaderLen+rawAlign+(off-t.bodyStart()), int64(len(p))
		default:
			return n, fmt.Errorf("raw tail: offset %d not copied", off)
		}
		chunk := p[:min(int64(len(p)), avail)]
		m, err := t.f.ReadAt(chunk, fileOff)
		n += m
		if err != nil {
			return n, err
		}
		p, off = p[m:], off+int64(m)
	}
	return n, nil
}

// close releases the copy. Its file, in-app, stays in the spool until the
// segment is uploaded (see uploadPending).
func (t *rawTail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// captureRawTail copies every committed frame after the replicated
// position into a pending raw segment, before the WAL can be restarted,
// truncated or deleted. The caller holds d.mu and has stopped writers (the
// WAL write lock, or SQLite itself calling the in-app gate). In-app, the
// copy is written into the spool directory (not fsynced: after a power
// loss a missing or torn copy only costs a snapshot).
//
// It returns errOtherGeneration if the WAL holds another generation than
// the replicated one, or none while frames of it were replicated: it was
// reset, truncated or deleted without walsync seeing it.
func (d *DB) captureRawTail() error {
	wf, err := d.openWAL()
	if errors.Is(err, wal.ErrHeader) || (err == nil && wf == nil) {
		if d.pos.Offset > wal.HeaderSize {
			return errOtherGeneration
		}
		return nil // no generation to capture
	} else if err != nil {
		return err
	}
	defer wf.f.Close()
	if !d.pos.SameGen(wf.hdr) || wf.size < d.pos.Offset {
		if d.pos.IsZero() {
			return nil
		}
		return errOtherGeneration
	}
	txid := d.txid + 1
	t := &rawTail{hdr: wf.hdr, from: d.pos}
	if d.app != nil {
		if err := os.MkdirAll(d.app.dir, 0o700); err != nil {
			return err
		}
		t.path = filepath.Join(d.app.dir, ltx.FormatFilename(txid, txid)+rawExt)
		t.f, err = os.OpenFile(t.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	} else {
		t.f, err = os.CreateTemp(d.r.opts.SpoolDir, ".walsync-tail-*")
		if err == nil {
			os.Remove(t.f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("copy wal tail: %w", err)
	}
	discard := func() {
		t.close()
		if t.path != "" {
			os.Remove(t.path)
		}
	}
	if mx := d.maxFrame(wf.hdr); mx > 0 {
		// The WAL-index says where the last commit ends, and no writer is
		// active: copy up to it in the kernel (copy_file_range), without
		// reading the frames here. They are checked when the copy is
		// encoded, off this path; a copy that does not verify then is a
		// discontinuity (see uploadPending).
		end, err := frameEnd(wf, mx)
		if err == nil && end.Offset <= d.pos.Offset {
			discard()
			return nil // nothing committed since
		}
		if err == nil {
			t.end = end
			err = t.copyKernel(wf.f, wf.size)
		}
		if err == nil {
			return d.addRawTail(t, txid, 0)
		}
		discard()
		return fmt.Errorf("copy wal tail: %w", err)
	}
	// One pass: the scan's reads of the WAL as stored are copied as they
	// go (through the codec, whose reads are whole blocks, in-app).
	tee := &teeWAL{src: wf.f, t: t}
	var r io.ReaderAt = tee
	if d.app != nil && d.app.codec != nil {
		r = d.app.codec.Reader(tee)
	}
	scan, err := scanWAL(r, wf.hdr, d.pos, 0, d.maxFrame(wf.hdr))
	if err == nil && !scan.empty() {
		t.end, t.commit = scan.end, scan.commit
		err = t.complete(wf.f, tee)
	}
	if err != nil || tee.err != nil || scan.empty() {
		discard()
		if err == nil {
			err = tee.err
		}
		if err != nil {
			return fmt.Errorf("copy wal tail: %w", err)
		}
		return nil
	}
	return d.addRawTail(t, txid, len(scan.pages))
}

// addRawTail makes a written raw copy the next pending segment. The caller
// holds d.mu.
func (d *DB) addRawTail(t *rawTail, txid ltx.TXID, pages int) error {
	ts := d.nextTimestamp()
	t.ts = ts.UnixMilli()
	if err := t.writeHeader(); err != nil {
		t.close()
		if t.path != "" {
			os.Remove(t.path)
		}
		return fmt.Errorf("copy wal tail: %w", err)
	}
	seg := &segment{level: SegmentLevel, minTXID: txid, maxTXID: txid, ts: ts,
		commit: t.commit, pages: pages, raw: t, file: t.path}
	d.pending = append(d.pending, seg)
	d.debug("captured tail", "txid", txid.String(), "salt1", t.from.Salt1, "from", t.from.Offset, "to", t.end.Offset)
	d.txid, d.pos, d.lastTS = txid, t.end, seg.ts.UnixMilli()
	return nil
}

// copyKernel copies the header block and the body up to the end rounded
// up to a whole block (or the WAL's size) with copy_file_range, which Go's
// File.ReadFrom uses between two files.
func (t *rawTail) copyKernel(walFile *os.File, walSize int64) error {
	copyTo := func(from, to, dst int64) error {
		to = min(to, walSize)
		if from >= to {
			return nil
		}
		if _, err := walFile.Seek(from, io.SeekStart); err != nil {
			return err
		}
		if _, err := t.f.Seek(dst, io.SeekStart); err != nil {
			return err
		}
		n, err := t.f.ReadFrom(io.LimitReader(walFile, to-from))
		if err == nil && n != to-from {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	end := (t.end.Offset + rawAlign - 1) / rawAlign * rawAlign
	if err := copyTo(0, rawAlign, rawHeaderLen); err != nil {
		return err
	}
	return copyTo(t.bodyStart(), end, rawHeaderLen+rawAlign)
}

// teeWAL reads the WAL as stored and copies what it reads into the raw
// tail, at the offsets the raw file keeps for them.
type teeWAL struct {
	src    *os.File
	t      *rawTail
	lo, hi int64 // body bytes copied: [lo, hi) (lo == hi: none)
	err    error // the first copy error
}

func (w *teeWAL) ReadAt(p []byte, off int64) (int, error) {
	n, err := w.src.ReadAt(p, off)
	if n > 0 && w.err == nil {
		w.err = w.t.put(p[:n], off)
		if start, end := max(off, w.t.bodyStart()), off+int64(n); start < end {
			if w.lo == w.hi {
				w.lo, w.hi = start, end
			} else {
				w.lo, w.hi = min(w.lo, start), max(w.hi, end)
			}
		}
	}
	return n, err
}

// put writes WAL bytes b read at off into the raw file: the part in the
// header block and the part in the body.
func (t *rawTail) put(b []byte, off int64) error {
	if off < rawAlign {
		head := b[:min(int64(len(b)), rawAlign-off)]
		if _, err := t.f.WriteAt(head, rawHeaderLen+off); err != nil {
			return err
		}
	}
	if end := off + int64(len(b)); end > t.bodyStart() {
		start := max(off, t.bodyStart())
		if _, err := t.f.WriteAt(b[start-off:], rawHeaderLen+rawAlign+(start-t.bodyStart())); err != nil {
			return err
		}
	}
	return nil
}

// complete copies what the scan did not read: the header block, and the
// body from its aligned start to the end rounded up to a whole block (an
// encrypting codec decrypts blocks).
func (t *rawTail) complete(walFile *os.File, tee *teeWAL) error {
	copyRange := func(from, to int64) error {
		if from >= to {
			return nil
		}
		b := make([]byte, to-from)
		n, err := walFile.ReadAt(b, from)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return t.put(b[:n], from)
	}
	end := (t.end.Offset + rawAlign - 1) / rawAlign * rawAlign
	if err := copyRange(0, min(rawAlign, t.bodyStart())); err != nil {
		return err
	}
	if tee.lo == tee.hi {
		return copyRange(t.bodyStart(), end)
	}
	if err := copyRange(t.bodyStart(), tee.lo); err != nil {
		return err
	}
	return copyRange(tee.hi, end)
}

// writeHeader writes the raw file's header and pads the header block, so
// that the body starts at a fixed offset.
func (t *rawTail) writeHeader() error {
	var h [rawHeaderLen]byte
	copy(h[:], rawMagic)
	binary.BigEndian.PutUint64(h[8:], uint64(t.from.Offset))
	binary.BigEndian.PutUint32(h[16:], t.from.Checksum1)
	binary.BigEndian.PutUint32(h[20:], t.from.Checksum2)
	binary.BigEndian.PutUint64(h[24:], uint64(t.end.Offset))
	binary.BigEndian.PutUint32(h[32:], t.end.Checksum1)
	binary.BigEndian.PutUint32(h[36:], t.end.Checksum2)
	binary.BigEndian.PutUint32(h[40:], t.commit)
	binary.BigEndian.PutUint64(h[44:], uint64(t.ts))
	if _, err := t.f.WriteAt(h[:], 0); err != nil {
		return err
	}
	fi, err := t.f.Stat()
	if err == nil && fi.Size() < rawHeaderLen+rawAlign {
		err = t.f.Truncate(rawHeaderLen + rawAlign)
	}
	return err
}

// openRawTail opens a raw copy left in a spool directory, for the upload
// of a crashed run's spool.
func openRawTail(path string) (*rawTail, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var h [rawHeaderLen]byte
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, rawHeaderLen), h[:]); err != nil || string(h[:8]) != rawMagic {
		f.Close()
		return nil, fmt.Errorf("raw tail %s: not a raw copy", path)
	}
	t := &rawTail{f: f}
	t.from.Offset = int64(binary.BigEndian.Uint64(h[8:]))
	t.from.Checksum1, t.from.Checksum2 = binary.BigEndian.Uint32(h[16:]), binary.BigEndian.Uint32(h[20:])
	t.end.Offset = int64(binary.BigEndian.Uint64(h[24:]))
	t.end.Checksum1, t.end.Checksum2 = binary.BigEndian.Uint32(h[32:]), binary.BigEndian.Uint32(h[36:])
	t.commit = binary.BigEndian.Uint32(h[40:])
	t.ts = int64(binary.BigEndian.Uint64(h[44:]))
	if t.from.Offset < wal.HeaderSize || t.end.Offset <= t.from.Offset {
		f.Close()
		return nil, fmt.Errorf("raw tail %s: bad range %d-%d", path, t.from.Offset, t.end.Offset)
	}
	return t, nil
}

// encode turns the raw copy into an LTX segment with the given TXID and
// timestamp, reading the WAL through decode (nil: as stored). The copy
// must hold exactly the commits it records: a torn or truncated copy (a
// power loss after it was written) is an error, never a shorter segment.
func (t *rawTail) encode(dir string, decode func(io.ReaderAt) io.ReaderAt, txid ltx.TXID, seg *segment, store pageStore) (*spool, error) {
	var r io.ReaderAt = t
	if decode != nil {
		r = decode(t)
	}
	var b [wal.HeaderSize]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("raw tail: %w", err)
	}
	hdr, err := wal.ParseHeader(b[:])
	if err != nil {
		return nil, fmt.Errorf("raw tail: %w", err)
	}
	from := t.from
	from.Salt1, from.Salt2 = hdr.Salt1, hdr.Salt2
	scan, err := scanWAL(r, hdr, from, 0, 0)
	if err != nil {
		return nil, err
	}
	if scan.end.Offset != t.end.Offset || scan.end.Checksum1 != t.end.Checksum1 || scan.end.Checksum2 != t.end.Checksum2 {
		return nil, fmt.Errorf("%w: the checksum chain ends at %d, the WAL-index at %d", errRawInvalid, scan.end.Offset, t.end.Offset)
	}
	sp, err := newSpoolFor(dir, int64(len(scan.pages))*int64(hdr.PageSize))
	if err != nil {
		return nil, err
	}
	if err := encodeSegment(sp, scan, txid, seg.ts, store); err != nil {
		sp.Close()
		return nil, err
	}
	return sp, nil
}
