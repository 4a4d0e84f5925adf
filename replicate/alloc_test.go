package replicate

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"
)

// Allocation budget of the upload path of one sync of a 1-frame
// transaction (4 KiB page): scanWAL, encodeSegment into a spool, Put to the
// in-memory store (which itself copies the object and hashes it).
//
// Measured on 2026-11-26 at commit 7646d51 (Go 1.26.8, linux/amd64): 31
// allocations and 173,721 bytes per segment (37 and 179,500 with -race).
// About 140 KB of those bytes are the buffers ltx.NewEncoder allocates for
// every segment. The bounds are about 1.5 times the measurement, so that a
// change that makes every small sync allocate much more fails here; lower
// them when the path gets cheaper.
const (
	smallSegmentAllocsMax = 47      // measured 31
	smallSegmentBytesMax  = 260_000 // measured 173,721
)

func TestSmallSegmentAllocations(t *testing.T) {
	ctx := context.Background()
	w := benchWAL(1, 1, 1)
	hdr, err := ParseWALHeader(w)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(w)
	store := newMemStore()
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

	t.Logf("one small segment: %.0f allocations, %d bytes", allocs, bytesPerRun)
	if allocs > smallSegmentAllocsMax {
		t.Errorf("allocations = %.0f, budget %d", allocs, smallSegmentAllocsMax)
	}
	if bytesPerRun > smallSegmentBytesMax {
		t.Errorf("bytes allocated = %d, budget %d", bytesPerRun, smallSegmentBytesMax)
	}
}
