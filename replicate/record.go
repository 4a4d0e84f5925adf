package replicate

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/superfly/ltx"
)

// closedRecord is what walsync knew when a WAL generation closed with
// everything in it captured. It is kept in <db>-walsync/closed, so that
// after a restart (of walsync, or of an in-app application) the chain can
// continue without a snapshot: the target's newest TXID must still be
// After, and the database file must be unchanged since (Stamp), or, in-app,
// the WAL must hold the generation SQLite announced (Next).
type closedRecord struct {
	After ltx.TXID  `json:"after"`           // last TXID of the closed generation
	Gen   [2]uint32 `json:"gen"`             // salts of the closed generation
	Next  [2]uint32 `json:"next,omitzero"`   // in-app: the generation SQLite announced
	Stamp fileStamp `json:"stamp,omitempty"` // the database file when the generation closed
}

// recordName is the record's file name in the database's walsync
// directory.
const recordName = "closed"

// recordDir returns the database's walsync directory: <db>-walsync.
func (d *DB) recordDir() string { return d.path + "-walsync" }

// writeRecord stores rec in dir, atomically (a rename) but not fsynced: it
// is written on the application's path by the in-app gate, and a record
// lost to a power loss only costs a snapshot (the resume finds none).
func writeRecord(dir string, rec closedRecord) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, recordName), strings.NewReader(string(b)))
}

// readRecord returns the record in dir, if there is a valid one.
func readRecord(dir string) (closedRecord, bool) {
	var rec closedRecord
	b, err := os.ReadFile(filepath.Join(dir, recordName))
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.After == 0 {
		return closedRecord{}, false
	}
	return rec, true
}

// removeRecord deletes the record in dir, and dir if that leaves it empty.
func removeRecord(dir string) error {
	err := os.Remove(filepath.Join(dir, recordName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	os.Remove(dir) // only if empty
	return nil
}
