package replicate

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/internal/wal"
)

// Allocation budget of the upload path of one sync of a 1-frame
// transaction (4 KiB page): scanWAL, encodeSegment into a spool, Put to the
// in-memory store (which itself copies the object and hashes it).
//
// Measured on 2026-11-26 at commit 5d77185 (Go 1.26.8, linux/amd64): 21
// allocations and 6,156 to 6,954 bytes per segment; with -race, whose
// sync.Pool drops a quarter of what is put back, 29 to 30 allocations and
// 53,104 to 58,526 bytes. (At commit 7646d51, before the LTX encoder's
// buffers were reused, it was 31 allocations and 173,721 bytes.) The
// bounds are about 1.5 times the measurement, so that a change that makes
// every small sync allocate much more fails here; lower them when the path
// gets cheaper.
const (
	smallSegmentAllocsMax = 32     // measured 21
	smallSegmentBytesMax  = 10_500 // measured 6,954

	smallSegmentAllocsMaxRace = 45     // measured 30 with -race
	smallSegmentBytesMaxRace  = 88_000 // measured 58,526 with -race
)

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func TestSmallSegmentAllocations(t *testing.T) {
	ctx := context.Background()
	w := benchWAL(1, 1, 1)
	hdr, err := wal.ParseHeader(w)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(w)
	store := memstore.New()
	key := ltxKey("alloc.db", SegmentLevel, 1, 1)
	ts := time.Unix(1_700_000_000, 0)
	run := func() {
		if err := encodeSmallSegment(ctx, r, hdr, store, key, ts); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(100, run)

	const runs = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		run()
	}
	runtime.ReadMemStats(&after)
	bytesPerRun := (after.TotalAlloc - before.TotalAlloc) / runs

	maxAllocs, maxBytes := smallSegmentAllocsMax, uint64(smallSegmentBytesMax)
	if raceEnabled() {
		maxAllocs, maxBytes = smallSegmentAllocsMaxRace, smallSegmentBytesMaxRace
	}
	t.Logf("one small segment: %.0f allocations, %d bytes (race detector: %v)", allocs, bytesPerRun, raceEnabled())
	if allocs > float64(maxAllocs) {
		t.Errorf("allocations = %.0f, budget %d", allocs, maxAllocs)
	}
	if bytesPerRun > maxBytes {
		t.Errorf("bytes allocated = %d, budget %d", bytesPerRun, maxBytes)
	}
}
