package replicate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// WAL file format constants (https://sqlite.org/fileformat2.html#walformat).
const (
	WALHeaderSize      = 32
	WALFrameHeaderSize = 24

	walMagicLE   = 0x377f0682 // checksums over little-endian words
	walMagicBE   = 0x377f0683 // checksums over big-endian words
	walVersion   = 3007000
	minPageSize  = 512
	maxPageSize  = 65536
	sqliteHeader = "SQLite format 3\x00"
)

// WAL reader errors.
var (
	// ErrWALHeader is returned for a WAL header that is not valid: wrong
	// magic, version, page size or header checksum.
	ErrWALHeader = errors.New("invalid wal header")
)

// WALHeader is the 32-byte header at the start of a WAL file.
type WALHeader struct {
	Magic         uint32
	Version       uint32
	PageSize      uint32
	CheckpointSeq uint32
	Salt1, Salt2  uint32
	Checksum1     uint32
	Checksum2     uint32
}

// ParseWALHeader decodes and validates a WAL header: magic, format
// version, page size and the header checksum.
func ParseWALHeader(b []byte) (WALHeader, error) {
	if len(b) < WALHeaderSize {
		return WALHeader{}, fmt.Errorf("%w: short header (%d bytes)", ErrWALHeader, len(b))
	}
	h := WALHeader{
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
		return h, fmt.Errorf("%w: bad magic %#08x", ErrWALHeader, h.Magic)
	case h.Version != walVersion:
		return h, fmt.Errorf("%w: unsupported version %d", ErrWALHeader, h.Version)
	case !validPageSize(h.PageSize):
		return h, fmt.Errorf("%w: bad page size %d", ErrWALHeader, h.PageSize)
	}
	s1, s2 := walChecksum(h.bigEndian(), 0, 0, b[:24])
	if s1 != h.Checksum1 || s2 != h.Checksum2 {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrWALHeader)
	}
	return h, nil
}

// bigEndian reports whether frame checksums are computed over big-endian
// 32-bit words.
func (h WALHeader) bigEndian() bool { return h.Magic&1 == 1 }

// frameSize is the size of one frame: header plus page.
func (h WALHeader) frameSize() int64 { return WALFrameHeaderSize + int64(h.PageSize) }

// FrameOffset returns the file offset of frame n (1-based).
func (h WALHeader) FrameOffset(n int64) int64 { return WALHeaderSize + (n-1)*h.frameSize() }

// start returns the position of the first frame of this generation.
func (h WALHeader) start() WALPos {
	return WALPos{Salt1: h.Salt1, Salt2: h.Salt2, Offset: WALHeaderSize, Checksum1: h.Checksum1, Checksum2: h.Checksum2}
}

func validPageSize(n uint32) bool {
	return n >= minPageSize && n <= maxPageSize && n&(n-1) == 0
}

// WALPos is a position in a WAL generation: the generation's salts, the
// offset of the next frame and the running checksum of the frame before it
// (the header checksum at the first frame). A position after a commit frame
// is a transaction boundary.
type WALPos struct {
	Salt1, Salt2         uint32
	Offset               int64
	Checksum1, Checksum2 uint32
}

// IsZero reports whether p is the zero position (no generation).
func (p WALPos) IsZero() bool { return p == WALPos{} }

// sameSalts reports whether the WAL-index describes p's generation.
func (p WALPos) sameSalts(st shmState) bool { return p.Salt1 == st.salt1 && p.Salt2 == st.salt2 }

// sameGen reports whether p and h belong to the same WAL generation.
func (p WALPos) sameGen(h WALHeader) bool { return p.Salt1 == h.Salt1 && p.Salt2 == h.Salt2 }

// WALFrame is the header of one WAL frame.
type WALFrame struct {
	Pgno   uint32 // page number
	Commit uint32 // database size in pages after a commit frame; 0 otherwise
	Offset int64  // file offset of the frame header
}

// WALReader reads the valid frames of one WAL generation in order. It stops
// at the first frame whose salts or cumulative checksum do not match: frames
// after it are left over from an earlier generation or torn writes.
type WALReader struct {
	r   io.ReaderAt
	hdr WALHeader
	pos WALPos
	buf []byte
}

// NewWALReader reads and validates the header of the WAL in r and returns a
// reader positioned at its first frame.
func NewWALReader(r io.ReaderAt) (*WALReader, error) {
	var b [WALHeaderSize]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: short header", ErrWALHeader)
		}
		return nil, fmt.Errorf("read wal header: %w", err)
	}
	hdr, err := ParseWALHeader(b[:])
	if err != nil {
		return nil, err
	}
	return NewWALReaderAt(r, hdr, hdr.start()), nil
}

// NewWALReaderAt returns a reader over the generation described by hdr that
// continues from pos, which must be a position of that generation.
func NewWALReaderAt(r io.ReaderAt, hdr WALHeader, pos WALPos) *WALReader {
	return &WALReader{r: r, hdr: hdr, pos: pos}
}

// Header returns the WAL header.
func (r *WALReader) Header() WALHeader { return r.hdr }

// Pos returns the position after the last frame returned by Next.
func (r *WALReader) Pos() WALPos { return r.pos }

// Next reads and validates the next frame and returns its header and page
// data. The page slice is reused by the following call. Next returns io.EOF
// at the end of the valid frames.
func (r *WALReader) Next() (WALFrame, []byte, error) {
	if r.buf == nil {
		r.buf = make([]byte, r.hdr.frameSize())
	}
	n, err := r.r.ReadAt(r.buf, r.pos.Offset)
	if n < len(r.buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return WALFrame{}, nil, io.EOF
		}
		return WALFrame{}, nil, fmt.Errorf("read wal frame at %d: %w", r.pos.Offset, err)
	}
	b := r.buf
	f := WALFrame{
		Pgno:   binary.BigEndian.Uint32(b[0:]),
		Commit: binary.BigEndian.Uint32(b[4:]),
		Offset: r.pos.Offset,
	}
	if f.Pgno == 0 ||
		binary.BigEndian.Uint32(b[8:]) != r.pos.Salt1 ||
		binary.BigEndian.Uint32(b[12:]) != r.pos.Salt2 {
		return WALFrame{}, nil, io.EOF
	}
	be := r.hdr.bigEndian()
	s1, s2 := walChecksum(be, r.pos.Checksum1, r.pos.Checksum2, b[:8])
	s1, s2 = walChecksum(be, s1, s2, b[WALFrameHeaderSize:])
	if s1 != binary.BigEndian.Uint32(b[16:]) || s2 != binary.BigEndian.Uint32(b[20:]) {
		return WALFrame{}, nil, io.EOF
	}
	r.pos.Offset += int64(len(b))
	r.pos.Checksum1, r.pos.Checksum2 = s1, s2
	return f, b[WALFrameHeaderSize:], nil
}

// walChecksum extends the WAL checksum (s1, s2) over b, whose length must be
// a multiple of 8, reading 32-bit words in the given byte order.
func walChecksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
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
