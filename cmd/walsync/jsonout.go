package main

import (
	"time"

	"github.com/walsync/walsync/replicate"
)

// The JSON outputs of the commands. Their keys are snake_case and stable:
// a key is never renamed or removed, and new keys may be added (see
// docs/json.md). They are output structs of their own, so that renaming a
// Go field of the library never changes them.

// listJSON is one line of `walsync list --json`: a database and its
// restorable range.
type listJSON struct {
	Name      string     `json:"name"`
	FirstTXID uint64     `json:"first_txid"` // oldest restorable TXID (its oldest snapshot's); 0 if unknown
	FirstTime *time.Time `json:"first_time"` // creation time of that snapshot; null if unknown
	LastTXID  uint64     `json:"last_txid"`  // newest restorable TXID
	LastTime  *time.Time `json:"last_time"`  // creation time of the newest file; null if unknown
	Snapshots int        `json:"snapshots"`
	Segments  int        `json:"segments"`
	Bytes     int64      `json:"bytes"` // total size of its objects
}

// newListJSON returns the list line of d.
func newListJSON(d replicate.DatabaseInfo) listJSON {
	return listJSON{
		Name:      d.Name,
		FirstTXID: uint64(d.FirstTXID),
		FirstTime: timeOrNil(d.FirstTime),
		LastTXID:  uint64(d.LastTXID),
		LastTime:  timeOrNil(d.LastTime),
		Snapshots: d.Snapshots,
		Segments:  d.Segments,
		Bytes:     d.Bytes,
	}
}

// restoreJSON is the output of `walsync restore --json`.
type restoreJSON struct {
	Name      string     `json:"name"`      // the database's name in the target
	Output    string     `json:"output"`    // the file written
	TXID      uint64     `json:"txid"`      // transaction ID of the restored state
	Timestamp *time.Time `json:"timestamp"` // creation time of the last file applied
	Files     int        `json:"files"`     // LTX files applied
	Pages     uint32     `json:"pages"`     // database size in pages
	PageSize  uint32     `json:"page_size"` // bytes per page
}

// newRestoreJSON returns the restore output of name restored to output.
func newRestoreJSON(name, output string, r replicate.RestoreResult) restoreJSON {
	return restoreJSON{
		Name:      name,
		Output:    output,
		TXID:      uint64(r.TXID),
		Timestamp: timeOrNil(r.Timestamp),
		Files:     r.Files,
		Pages:     r.Pages,
		PageSize:  r.PageSize,
	}
}

// timeOrNil returns t in UTC, or nil for the zero time (encoded as null).
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
