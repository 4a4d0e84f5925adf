package replicate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/walsync/walsync/internal/wal"
)

// Database file errors.
var (
	// ErrNotSQLite is returned for a file that is not an SQLite database.
	ErrNotSQLite = errors.New("not an SQLite database")

	// ErrNotWAL is returned for a database that is not in WAL mode.
	ErrNotWAL = errors.New("database is not in WAL mode (run: sqlite3 DB 'PRAGMA journal_mode=WAL')")
)

// sqliteHeader is the magic string at the start of a database file.
const sqliteHeader = "SQLite format 3\x00"

// dbHeader holds the fields of the 100-byte database header walsync uses.
type dbHeader struct {
	pageSize  uint32
	pageCount uint32 // in-header database size, 0 if not valid
	reserve   uint8  // reserved bytes at the end of each page
	wal       bool   // file format read/write versions are 2 (WAL)
}

// readDBHeader reads and checks the database header of f.
func readDBHeader(f io.ReaderAt) (dbHeader, error) {
	var b [100]byte
	if n, err := f.ReadAt(b[:], 0); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return dbHeader{}, ErrNotSQLite
		}
		return dbHeader{}, fmt.Errorf("read database header: %w", err)
	}
	return parseDBHeader(b[:])
}

// parseDBHeader decodes a database header.
func parseDBHeader(b []byte) (dbHeader, error) {
	if len(b) < 100 || string(b[:16]) != sqliteHeader {
		return dbHeader{}, ErrNotSQLite
	}
	h := dbHeader{
		pageSize: uint32(binary.BigEndian.Uint16(b[16:])),
		reserve:  b[20],
		wal:      b[18] == 2 && b[19] == 2,
	}
	if h.pageSize == 1 {
		h.pageSize = 65536
	}
	if !wal.ValidPageSize(h.pageSize) {
		return dbHeader{}, fmt.Errorf("%w: bad page size %d", ErrNotSQLite, h.pageSize)
	}
	// The in-header size is valid only if the change counter matches the
	// version-valid-for number (https://sqlite.org/fileformat2.html#in_header_database_size).
	if binary.BigEndian.Uint32(b[24:]) == binary.BigEndian.Uint32(b[92:]) {
		h.pageCount = binary.BigEndian.Uint32(b[28:])
	}
	return h, nil
}
