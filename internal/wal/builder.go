package wal

import (
	"bytes"
	"encoding/binary"
)

// Builder builds WAL files with valid headers, salts and checksums, for
// tests and fixtures.
type Builder struct {
	pageSize     uint32
	bigEndian    bool
	salt1, salt2 uint32
	buf          bytes.Buffer
	s1, s2       uint32
}

// NewBuilder starts a WAL with the given page size, checksum byte order and
// salts.
func NewBuilder(pageSize uint32, bigEndian bool, salt1, salt2 uint32) *Builder {
	b := &Builder{pageSize: pageSize, bigEndian: bigEndian, salt1: salt1, salt2: salt2}
	hdr := make([]byte, HeaderSize)
	magic := uint32(walMagicLE)
	if bigEndian {
		magic = walMagicBE
	}
	binary.BigEndian.PutUint32(hdr[0:], magic)
	binary.BigEndian.PutUint32(hdr[4:], walVersion)
	binary.BigEndian.PutUint32(hdr[8:], pageSize)
	binary.BigEndian.PutUint32(hdr[16:], salt1)
	binary.BigEndian.PutUint32(hdr[20:], salt2)
	b.s1, b.s2 = Checksum(bigEndian, 0, 0, hdr[:24])
	binary.BigEndian.PutUint32(hdr[24:], b.s1)
	binary.BigEndian.PutUint32(hdr[28:], b.s2)
	b.buf.Write(hdr)
	return b
}

// Frame appends a valid frame for pgno filled with fill; commit is the
// database size after a commit frame, 0 otherwise.
func (b *Builder) Frame(pgno, commit uint32, fill byte) *Builder {
	page := bytes.Repeat([]byte{fill}, int(b.pageSize))
	return b.FrameWith(pgno, commit, page)
}

// FrameWith appends a valid frame holding page, which must be one page
// long.
func (b *Builder) FrameWith(pgno, commit uint32, page []byte) *Builder {
	f := make([]byte, FrameHeaderSize, FrameHeaderSize+len(page))
	binary.BigEndian.PutUint32(f[0:], pgno)
	binary.BigEndian.PutUint32(f[4:], commit)
	binary.BigEndian.PutUint32(f[8:], b.salt1)
	binary.BigEndian.PutUint32(f[12:], b.salt2)
	f = append(f, page...)
	b.s1, b.s2 = Checksum(b.bigEndian, b.s1, b.s2, f[:8])
	b.s1, b.s2 = Checksum(b.bigEndian, b.s1, b.s2, f[FrameHeaderSize:])
	binary.BigEndian.PutUint32(f[16:], b.s1)
	binary.BigEndian.PutUint32(f[20:], b.s2)
	b.buf.Write(f)
	return b
}

// Bytes returns a copy of the WAL built so far.
func (b *Builder) Bytes() []byte { return bytes.Clone(b.buf.Bytes()) }
