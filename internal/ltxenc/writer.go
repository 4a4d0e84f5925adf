// Package ltxenc writes LTX files (github.com/superfly/ltx, format version
// 3) byte for byte as ltx.Encoder does, with its LZ4 compressor, buffers
// and page index pooled across files. It knows the format only.
package ltxenc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// Writer writes LTX files (format version 3) byte for byte as
// github.com/superfly/ltx's Encoder does (a test checks it), but keeps its
// LZ4 compressor, compression buffer and page index across files.
// ltx.Encoder embeds a 136 KiB compressor in every encoder, which made up
// nearly all of a small segment's allocations and most of walsync's GC work.
// Headers and trailers are still marshalled by the ltx package.
type Writer struct {
	comp  lz4.Compressor
	cbuf  []byte
	index []indexEntry
	buf   []byte

	w       io.Writer
	hdr     ltx.Header
	crc     uint64
	n       int64
	prev    uint32
	started bool
}

type indexEntry struct {
	pgno         uint32
	offset, size int64
}

var (
	writers  = sync.Pool{New: func() any { return new(Writer) }}
	crcTable = crc64.MakeTable(crc64.ISO)
)

// NewWriter returns a pooled writer; release it with put.
func NewWriter(w io.Writer, hdr ltx.Header) (*Writer, error) {
	if err := hdr.Validate(); err != nil {
		return nil, err
	}
	lw := writers.Get().(*Writer)
	lw.w, lw.hdr, lw.crc, lw.n, lw.prev, lw.started = w, hdr, 0, 0, 0, false
	lw.index = lw.index[:0]
	b, err := hdr.MarshalBinary()
	if err != nil {
		lw.Release()
		return nil, err
	}
	if err := lw.write(b); err != nil {
		lw.Release()
		return nil, fmt.Errorf("write header: %w", err)
	}
	return lw, nil
}

// Release returns lw to the pool.
func (lw *Writer) Release() {
	lw.w = nil
	if cap(lw.index) > 1<<12 {
		lw.index = nil // keep the pool small after a huge snapshot
	}
	writers.Put(lw)
}

// write writes b and adds it to the checksum.
func (lw *Writer) write(b []byte) error {
	n, err := lw.w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	lw.crc = crc64.Update(lw.crc, crcTable, b[:n])
	lw.n += int64(n)
	return err
}

// Page writes one page. Pages must come in ascending order; a snapshot
// (minimum TXID 1) must list every page but the lock page.
func (lw *Writer) Page(pgno uint32, data []byte) error {
	switch {
	case pgno == 0 || pgno > lw.hdr.Commit:
		return fmt.Errorf("page number %d out of range for commit size %d", pgno, lw.hdr.Commit)
	case uint32(len(data)) != lw.hdr.PageSize:
		return fmt.Errorf("page %d: %d bytes, want %d", pgno, len(data), lw.hdr.PageSize)
	case pgno == ltx.LockPgno(lw.hdr.PageSize):
		return fmt.Errorf("cannot encode lock page %d", pgno)
	case pgno <= lw.prev:
		return fmt.Errorf("out-of-order page numbers: %d,%d", lw.prev, pgno)
	}
	if bound := lz4.CompressBlockBound(len(data)); cap(lw.cbuf) < bound {
		lw.cbuf = make([]byte, bound)
	}
	n, err := lw.comp.CompressBlock(data, lw.cbuf[:cap(lw.cbuf)])
	if err != nil {
		return fmt.Errorf("compress page %d: %w", pgno, err)
	} else if n == 0 {
		return errors.New("lz4 block compression failed")
	}
	offset := lw.n
	lw.buf = binary.BigEndian.AppendUint32(lw.buf[:0], pgno)
	lw.buf = binary.BigEndian.AppendUint16(lw.buf, ltx.PageHeaderFlagSize)
	lw.buf = binary.BigEndian.AppendUint32(lw.buf, uint32(n))
	if err := lw.write(lw.buf); err != nil {
		return fmt.Errorf("write page header %d: %w", pgno, err)
	}
	// The compressed bytes are written, the uncompressed ones checksummed.
	if m, err := lw.w.Write(lw.cbuf[:n]); err != nil {
		return fmt.Errorf("write page %d: %w", pgno, err)
	} else if m < n {
		return fmt.Errorf("write page %d: %w", pgno, io.ErrShortWrite)
	}
	lw.crc = crc64.Update(lw.crc, crcTable, data)
	lw.n += int64(n)
	lw.index = append(lw.index, indexEntry{pgno: pgno, offset: offset, size: lw.n - offset})
	lw.prev = pgno
	return nil
}

// Close writes the end of the page block, the page index and the trailer.
func (lw *Writer) Close() error {
	var end [ltx.PageHeaderSize]byte
	if err := lw.write(end[:]); err != nil {
		return fmt.Errorf("write end of pages: %w", err)
	}
	start := lw.n
	for _, e := range lw.index {
		lw.buf = binary.AppendUvarint(lw.buf[:0], uint64(e.pgno))
		lw.buf = binary.AppendUvarint(lw.buf, uint64(e.offset))
		lw.buf = binary.AppendUvarint(lw.buf, uint64(e.size))
		if err := lw.write(lw.buf); err != nil {
			return fmt.Errorf("write page index: %w", err)
		}
	}
	lw.buf = binary.AppendUvarint(lw.buf[:0], 0)
	if err := lw.write(lw.buf); err != nil {
		return fmt.Errorf("write page index: %w", err)
	}
	lw.buf = binary.BigEndian.AppendUint64(lw.buf[:0], uint64(lw.n-start))
	if err := lw.write(lw.buf); err != nil {
		return fmt.Errorf("write page index size: %w", err)
	}
	var tr ltx.Trailer // no post-apply checksum: HeaderFlagNoChecksum
	b, err := tr.MarshalBinary()
	if err != nil {
		return err
	}
	lw.crc = crc64.Update(lw.crc, crcTable, b[:ltx.TrailerChecksumOffset])
	tr.FileChecksum = ltx.ChecksumFlag | ltx.Checksum(lw.crc)
	if err := tr.Validate(lw.hdr); err != nil {
		return fmt.Errorf("validate trailer: %w", err)
	}
	if b, err = tr.MarshalBinary(); err != nil {
		return err
	}
	if m, err := lw.w.Write(b); err != nil {
		return fmt.Errorf("write trailer: %w", err)
	} else if m < len(b) {
		return fmt.Errorf("write trailer: %w", io.ErrShortWrite)
	}
	return nil
}
