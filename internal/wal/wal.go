// Package wal reads SQLite write-ahead log files: the header, frames
// validated by salts and the cumulative checksum chain, and positions in a
// WAL generation. It knows the file format only; what to capture and when
// is the engine's (package replicate).
//
// Format: https://sqlite.org/fileformat2.html#walformat
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// WAL file format constants (https://sqlite.org/fileformat2.html#walformat).
const (
	HeaderSize      = 32
	FrameHeaderSize = 24

	walMagicLE  = 0x377f0682 // checksums over little-endian words
	walMagicBE  = 0x377f0683 // checksums over big-endian words
	walVersion  = 3007000
	minPageSize = 512
	maxPageSize = 65536
)

// WAL reader errors.
var (
	// ErrHeader is returned for a WAL header that is not valid: wrong
	// magic, version, page size or header checksum.
	ErrHeader = errors.New("invalid wal header")
)

// Header is the 32-byte header at the start of a WAL file.
type Header struct {
	Magic         uint32
	Version       uint32
	PageSize      uint32
	CheckpointSeq uint32
	Salt1, Salt2  uint32
	Checksum1     uint32
	Checksum2     uint32
}

// ParseHeader decodes and validates a WAL header: magic, format
// version, page size and the header checksum.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: short header (%d bytes)", ErrHeader, len(b))
	}
	h := Header{
		Magic:         binary.BigEndian.Uint32(b[0:]),
		Version:       binary.BigEndian.Uint32(b[4:]),
		PageSize:      binary.BigEndian.Uint32(b[8:]),
		CheckpointSeq: binary.BigEndian.Uint32(b[12:]),
		Salt1:         binary.BigEndian.Uint32(b[16:]),
		Salt2:         binary.BigEndian.Uint32(b[20:]),
		Checksum1:     binary.BigEndian.Uint32(b[24:]),
		Checksum2:     binary.BigEndian.Uint32(b[28:]),
	}
	switch {
	case h.Magic != walMagicLE && h.Magic != walMagicBE:
		return h, fmt.Errorf("%w: bad magic %#08x", ErrHeader, h.Magic)
	case h.Version != walVersion:
		return h, fmt.Errorf("%w: unsupported version %d", ErrHeader, h.Version)
	case !ValidPageSize(h.PageSize):
		return h, fmt.Errorf("%w: bad page size %d", ErrHeader, h.PageSize)
	}
	s1, s2 := Checksum(h.BigEndian(), 0, 0, b[:24])
	if s1 != h.Checksum1 || s2 != h.Checksum2 {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrHeader)
	}
	return h, nil
}

// BigEndian reports whether frame checksums are computed over big-endian
// 32-bit words.
func (h Header) BigEndian() bool { return h.Magic&1 == 1 }

// FrameSize is the size of one frame: header plus page.
func (h Header) FrameSize() int64 { return FrameHeaderSize + int64(h.PageSize) }

// FrameOffset returns the file offset of frame n (1-based).
func (h Header) FrameOffset(n int64) int64 { return HeaderSize + (n-1)*h.FrameSize() }

// Start returns the position of the first frame of this generation.
func (h Header) Start() Pos {
	return Pos{Salt1: h.Salt1, Salt2: h.Salt2, Offset: HeaderSize, Checksum1: h.Checksum1, Checksum2: h.Checksum2}
}

// ValidPageSize reports whether n is a page size SQLite can use: a power
// of two from 512 to 65536.
func ValidPageSize(n uint32) bool {
	return n >= minPageSize && n <= maxPageSize && n&(n-1) == 0
}

// Pos is a position in a WAL generation: the generation's salts, the
// offset of the next frame and the running checksum of the frame before it
// (the header checksum at the first frame). A position after a commit frame
// is a transaction boundary.
type Pos struct {
	Salt1, Salt2         uint32
	Offset               int64
	Checksum1, Checksum2 uint32
}

// IsZero reports whether p is the zero position (no generation).
func (p Pos) IsZero() bool { return p == Pos{} }

// SameGen reports whether p and h belong to the same WAL generation.
func (p Pos) SameGen(h Header) bool { return p.Salt1 == h.Salt1 && p.Salt2 == h.Salt2 }

// Frame is the header of one WAL frame.
type Frame struct {
	Pgno   uint32 // page number
	Commit uint32 // database size in pages after a commit frame; 0 otherwise
	Offset int64  // file offset of the frame header
}

// Reader reads the valid frames of one WAL generation in order. It stops
// at the first frame whose salts or cumulative checksum do not match: frames
// after it are left over from an earlier generation or torn writes.
type Reader struct {
	r   io.ReaderAt
	hdr Header
	pos Pos
	buf []byte
}

// NewReader reads and validates the header of the WAL in r and returns a
// reader positioned at its first frame.
func NewReader(r io.ReaderAt) (*Reader, error) {
	var b [HeaderSize]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: short header", ErrHeader)
		}
		return nil, fmt.Errorf("read wal header: %w", err)
	}
	hdr, err := ParseHeader(b[:])
	if err != nil {
		return nil, err
	}
	return NewReaderAt(r, hdr, hdr.Start()), nil
}

// NewReaderAt returns a reader over the generation described by hdr that
// continues from pos, which must be a position of that generation.
func NewReaderAt(r io.ReaderAt, hdr Header, pos Pos) *Reader {
	return &Reader{r: r, hdr: hdr, pos: pos}
}

// SetBuffer makes the reader read frames into buf, which must hold at
// least one frame (FrameSize bytes), instead of allocating its own.
func (r *Reader) SetBuffer(buf []byte) { r.buf = buf[:r.hdr.FrameSize()] }

// Header returns the WAL header.
func (r *Reader) Header() Header { return r.hdr }

// Pos returns the position after the last frame returned by Next.
func (r *Reader) Pos() Pos { return r.pos }

// Next reads and validates the next frame and returns its header and page
// data. The page slice is reused by the following call. Next returns io.EOF
// at the end of the valid frames.
func (r *Reader) Next() (Frame, []byte, error) {
	if r.buf == nil {
		r.buf = make([]byte, r.hdr.FrameSize())
	}
	n, err := r.r.ReadAt(r.buf, r.pos.Offset)
	if n < len(r.buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return Frame{}, nil, io.EOF
		}
		return Frame{}, nil, fmt.Errorf("read wal frame at %d: %w", r.pos.Offset, err)
	}
	b := r.buf
	f := Frame{
		Pgno:   binary.BigEndian.Uint32(b[0:]),
		Commit: binary.BigEndian.Uint32(b[4:]),
		Offset: r.pos.Offset,
	}
	if f.Pgno == 0 ||
		binary.BigEndian.Uint32(b[8:]) != r.pos.Salt1 ||
		binary.BigEndian.Uint32(b[12:]) != r.pos.Salt2 {
		return Frame{}, nil, io.EOF
	}
	be := r.hdr.BigEndian()
	s1, s2 := Checksum(be, r.pos.Checksum1, r.pos.Checksum2, b[:8])
	s1, s2 = Checksum(be, s1, s2, b[FrameHeaderSize:])
	if s1 != binary.BigEndian.Uint32(b[16:]) || s2 != binary.BigEndian.Uint32(b[20:]) {
		return Frame{}, nil, io.EOF
	}
	r.pos.Offset += int64(len(b))
	r.pos.Checksum1, r.pos.Checksum2 = s1, s2
	return f, b[FrameHeaderSize:], nil
}

// Checksum extends the WAL checksum (s1, s2) over b, whose length must be
// a multiple of 8, reading 32-bit words in the given byte order.
func Checksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
	if bigEndian {
		for i := 0; i+8 <= len(b); i += 8 {
			s1 += binary.BigEndian.Uint32(b[i:]) + s2
			s2 += binary.BigEndian.Uint32(b[i+4:]) + s1
		}
		return s1, s2
	}
	for i := 0; i+8 <= len(b); i += 8 {
		s1 += binary.LittleEndian.Uint32(b[i:]) + s2
		s2 += binary.LittleEndian.Uint32(b[i+4:]) + s1
	}
	return s1, s2
}
