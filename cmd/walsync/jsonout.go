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

// restoreJSON is the output of `walsync restore --json`, and of each
// database of `walsync restore --all --json`.
type restoreJSON struct {
	Name       string     `json:"name"`        // the database's name in the target
	Output     string     `json:"output"`      // the file written
	Status     string     `json:"status"`      // restored, skipped or failed
	Reason     string     `json:"reason"`      // why it was skipped or failed; "" if restored
	TXID       uint64     `json:"txid"`        // transaction ID of the restored state
	Timestamp  *time.Time `json:"timestamp"`   // creation time of the last file applied
	Files      int        `json:"files"`       // LTX files applied
	Pages      uint32     `json:"pages"`       // database size in pages
	PageSize   uint32     `json:"page_size"`   // bytes per page
	Bytes      int64      `json:"bytes"`       // bytes downloaded
	Requests   int        `json:"requests"`    // GET requests made to the target
	DurationMS int64      `json:"duration_ms"` // time the restore took
}

// newRestoreJSON returns the restore output of name restored to output in
// el.
func newRestoreJSON(name, output string, r replicate.RestoreResult, el time.Duration) restoreJSON {
	return restoreJSON{
		Name:       name,
		Output:     output,
		Status:     "restored",
		TXID:       uint64(r.TXID),
		Timestamp:  timeOrNil(r.Timestamp),
		Files:      r.Files,
		Pages:      r.Pages,
		PageSize:   r.PageSize,
		Bytes:      r.Bytes,
		Requests:   r.Requests,
		DurationMS: el.Milliseconds(),
	}
}

// restoreAllJSON is the last line of `walsync restore --all --json`.
type restoreAllJSON struct {
	Summary    bool  `json:"summary"`   // always true: tells this line from the databases'
	Databases  int   `json:"databases"` // databases selected
	Restored   int   `json:"restored"`
	Skipped    int   `json:"skipped"`
	Failed     int   `json:"failed"`
	Bytes      int64 `json:"bytes"`       // bytes downloaded, all databases
	Requests   int   `json:"requests"`    // GET requests, all databases
	DurationMS int64 `json:"duration_ms"` // time the whole command took
}

// timeOrNil returns t in UTC, or nil for the zero time (encoded as null).
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
