package replicate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/ltxenc"
	"github.com/walsync/walsync/internal/memstore"
)

// history is a synthetic database history for restore tests: the pages
// after each TXID and the pages each TXID wrote. The database grows, shrinks
// and grows again, so that merges must get truncation right.
type history struct {
	states  [][][]byte // states[t][pgno-1]: the state after TXID t
	changed [][]uint32 // changed[t]: the pages TXID t wrote, ascending
}

const (
	histPageSize = 512
	histEpoch    = 1_700_000_000_000 // ms
)

// histTime is the creation time of TXID t's segment; a snapshot of TXID t
// is created half a second later.
func histTime(t ltx.TXID) int64 { return histEpoch + int64(t)*1000 }

func newHistory(seed uint64, n int) *history {
	rng := rand.New(rand.NewPCG(seed, 7))
	h := &history{states: make([][][]byte, n+1), changed: make([][]uint32, n+1)}
	page := func(t int, pgno uint32) []byte {
		b := make([]byte, histPageSize)
		r := rand.New(rand.NewPCG(uint64(t), uint64(pgno)))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for t := 1; t <= n; t++ {
		cur := slices.Clone(h.states[t-1])
		set := map[uint32]bool{}
		switch {
		case t == 1:
			cur = make([][]byte, 4+rng.IntN(4))
			for i := range cur {
				set[uint32(i+1)] = true
			}
		case rng.IntN(6) == 0 && len(cur) > 2:
			cur = cur[:len(cur)-1-rng.IntN(2)]
		case rng.IntN(3) == 0:
			for range 1 + rng.IntN(3) {
				cur = append(cur, nil)
				set[uint32(len(cur))] = true
			}
		}
		for range 1 + rng.IntN(3) {
			set[uint32(1+rng.IntN(len(cur)))] = true
		}
		for pgno := range set {
			cur[pgno-1] = page(t, pgno)
			h.changed[t] = append(h.changed[t], pgno)
		}
		slices.Sort(h.changed[t])
		h.states[t] = cur
	}
	return h
}

// file encodes one LTX file of the history: a segment (level 0), a
// snapshot (level 9) or a compaction of the segments lo..hi (levels 1-8),
// made with ltx.Compactor as Litestream makes them.
func (h *history) file(t testing.TB, level int, lo, hi ltx.TXID) []byte {
	t.Helper()
	switch level {
	case 0:
		return h.encode(t, ltx.Header{MinTXID: lo, MaxTXID: hi, Timestamp: histTime(hi)}, h.changed[hi], h.states[hi])
	case SnapshotLevel:
		pages := make([]uint32, len(h.states[hi]))
		for i := range pages {
			pages[i] = uint32(i + 1)
		}
		return h.encode(t, ltx.Header{MinTXID: 1, MaxTXID: hi, Timestamp: histTime(hi) + 500}, pages, h.states[hi])
	}
	var inputs []ltx.TXID
	for tx := lo; tx <= hi; tx++ {
		inputs = append(inputs, tx)
	}
	var rdrs []io.Reader
	for _, tx := range inputs {
		rdrs = append(rdrs, bytes.NewReader(h.file(t, 0, tx, tx)))
	}
	var buf bytes.Buffer
	c, err := ltx.NewCompactor(&buf, rdrs)
	if err != nil {
		t.Fatal(err)
	}
	c.HeaderFlags = ltx.HeaderFlagNoChecksum
	if err := c.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (h *history) encode(t testing.TB, hdr ltx.Header, pages []uint32, state [][]byte) []byte {
	t.Helper()
	hdr.Version, hdr.PageSize, hdr.Flags = ltx.Version, histPageSize, ltx.HeaderFlagNoChecksum
	hdr.Commit = uint32(len(h.states[hdr.MaxTXID]))
	var buf bytes.Buffer
	w, err := ltxenc.NewWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	for _, pgno := range pages {
		if err := w.Page(pgno, state[pgno-1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// db is the database file the history holds after TXID t.
func (h *history) db(t ltx.TXID) []byte {
	return bytes.Join(h.states[t], nil)
}

// layoutFile is one file of a synthetic target layout.
type layoutFile struct {
	level  int
	lo, hi ltx.TXID
}

// store puts the layout's files for database "db" into a new store and
// returns it with the listing.
func (h *history) store(t testing.TB, layout []layoutFile) (*memstore.Store, []ltxFile) {
	t.Helper()
	store := memstore.New()
	for _, f := range layout {
		b := h.file(t, f.level, f.lo, f.hi)
		if err := store.Put(context.Background(), ltxKey("db", f.level, f.lo, f.hi), bytes.NewReader(b), int64(len(b)), nil); err != nil {
			t.Fatal(err)
		}
	}
	files, err := listLTXFiles(context.Background(), store, "db")
	if err != nil {
		t.Fatal(err)
	}
	return store, files
}

// span returns files of level covering lo..hi in steps of n TXIDs.
func span(level int, lo, hi, n ltx.TXID) []layoutFile {
	var out []layoutFile
	for a := lo; a <= hi; a += n {
		out = append(out, layoutFile{level, a, min(a+n-1, hi)})
	}
	return out
}

// minPlan is the fewest files that reach target, by breadth-first search
// over every TXID reachable (a snapshot starts a plan), or -1.
func minPlan(files []ltxFile, target ltx.TXID) int {
	dist := map[ltx.TXID]int{0: 0}
	queue := []ltx.TXID{0}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == target {
			return dist[cur]
		}
		for _, f := range files {
			if f.level == SnapshotLevel && cur != 0 {
				continue
			}
			if f.minTXID > cur+1 || f.maxTXID <= cur || f.maxTXID > target {
				continue
			}
			if _, ok := dist[f.maxTXID]; !ok {
				dist[f.maxTXID] = dist[cur] + 1
				queue = append(queue, f.maxTXID)
			}
		}
	}
	return -1
}

// historyLayouts are the target layouts the planner and the merge are
// tested on, over a 40-TXID history.
func historyLayouts() []struct {
	name   string
	layout []layoutFile
} {
	cat := func(parts ...[]layoutFile) []layoutFile { return slices.Concat(parts...) }
	snap := func(hi ltx.TXID) []layoutFile { return []layoutFile{{SnapshotLevel, 1, hi}} }
	return []struct {
		name   string
		layout []layoutFile
	}{
		{"Segments", cat(snap(1), span(0, 2, 40, 1))},
		{"Levels0123", cat(snap(1), span(0, 2, 40, 1), span(1, 2, 40, 3), span(2, 2, 37, 9), span(3, 2, 28, 27))},
		{"SnapshotMidL1", cat(snap(1), snap(7), snap(30), span(0, 2, 40, 1), span(1, 2, 40, 4))},
		{"Overlapping", cat(snap(1), span(0, 2, 40, 1), []layoutFile{{1, 2, 6}, {1, 4, 9}, {2, 2, 8}, {1, 8, 20}, {2, 15, 33}, {3, 10, 36}})},
		// A discontinuity after TXID 10 (no file holds 11-12) that the
		// snapshot of TXID 14 closes.
		{"GapClosedBySnapshot", cat(snap(1), span(0, 2, 10, 1), snap(14), span(0, 15, 40, 1), span(1, 15, 40, 5))},
		// Retention deleted the segments before TXID 30; compactions
		// cover them.
		{"DeletedL0", cat(snap(1), span(0, 30, 40, 1), span(1, 2, 40, 4), span(2, 2, 33, 8))},
		{"Level9Only", cat(snap(1), snap(5), snap(40))},
	}
}

// TestPlanMinimal: on every layout and every target TXID, planTXID
// returns a plan exactly when one exists, ending exactly at the target,
// with the fewest files possible (against a breadth-first search).
func TestPlanMinimal(t *testing.T) {
	for _, c := range historyLayouts() {
		t.Run(c.name, func(t *testing.T) {
			var files []ltxFile
			for _, f := range c.layout {
				files = append(files, ltxFile{level: f.level, minTXID: f.lo, maxTXID: f.hi, key: ltxKey("db", f.level, f.lo, f.hi)})
			}
			for target := ltx.TXID(1); target <= 40; target++ {
				plan, err := planTXID(files, target)
				want := minPlan(files, target)
				if want < 0 {
					if err == nil {
						t.Errorf("TXID %d: plan %v, want none", target, keysOf(plan))
					}
					continue
				}
				if err != nil {
					t.Fatalf("TXID %d: %v, want a plan of %d files", target, err, want)
				}
				if got := plan[len(plan)-1].maxTXID; got != target {
					t.Errorf("TXID %d: plan ends at %d", target, got)
				}
				if len(plan) != want {
					t.Errorf("TXID %d: plan of %d files %v, want %d", target, len(plan), keysOf(plan), want)
				}
				if err := verifyPlan(plan); err != nil {
					t.Errorf("TXID %d: %v", target, err)
				}
			}
		})
	}
}

func keysOf(plan []ltxFile) []string {
	var out []string
	for _, f := range plan {
		out = append(out, fmt.Sprintf("L%d:%d-%d", f.level, f.minTXID, f.maxTXID))
	}
	return out
}

// TestRestoreHistory restores every layout at every TXID a plan reaches,
// by TXID and by time, and compares the result byte for byte with the
// history's state at that TXID: the merge by page number equals applying
// the files in order. It runs with merges of all files at once, in
// windows of 2 files, and with every object downloaded in ranged parts.
func TestRestoreHistory(t *testing.T) {
	h := newHistory(2, 40)
	for _, mode := range []struct {
		name          string
		width         int
		big, partSize int64
	}{
		{"Merge", mergeWidth, bigObjectSize, partSize},
		{"Windows", 2, bigObjectSize, partSize},
		{"Parts", mergeWidth, 100, 64},
	} {
		t.Run(mode.name, func(t *testing.T) {
			defer func(w int, b, p int64) { mergeWidth, bigObjectSize, partSize = w, b, p }(mergeWidth, bigObjectSize, partSize)
			mergeWidth, bigObjectSize, partSize = mode.width, mode.big, mode.partSize
			for _, c := range historyLayouts() {
				t.Run(c.name, func(t *testing.T) {
					store, files := h.store(t, c.layout)
					for target := ltx.TXID(1); target <= 40; target++ {
						if minPlan(files, target) < 0 {
							continue
						}
						for _, opts := range []RestoreOptions{
							{TXID: target},
							{Timestamp: time.UnixMilli(histTime(target) + 100)},
						} {
							if !opts.Timestamp.IsZero() && !reachableByTime(files, target) {
								continue
							}
							opts.Check, opts.Concurrency = IntegrityNone, 3
							out := t.TempDir() + "/out.db"
							res, err := Restore(t.Context(), store, "db", out, opts)
							if err != nil {
								t.Fatalf("TXID %d (%+v): %v", target, opts, err)
							}
							if res.TXID != target {
								t.Fatalf("restored TXID %d, want %d", res.TXID, target)
							}
							// The fewest files: by time, among the snapshots
							// created by then.
							usable := files
							if !opts.Timestamp.IsZero() {
								usable = slices.DeleteFunc(slices.Clone(files), func(f ltxFile) bool {
									return f.level == SnapshotLevel && f.maxTXID >= target
								})
							}
							if want := minPlan(usable, target); res.Files != want {
								t.Errorf("TXID %d (%+v): restored from %d files, want %d", target, opts, res.Files, want)
							}
							got, err := os.ReadFile(out)
							if err != nil {
								t.Fatal(err)
							}
							if !bytes.Equal(got, h.db(target)) {
								t.Fatalf("TXID %d (%+v): restored database (%d bytes) differs from the source state (%d bytes)", target, opts, len(got), len(h.db(target)))
							}
						}
					}
				})
			}
		})
	}
}

// reachableByTime reports whether a restore as of target's time finds
// target: the finest chain after the newest snapshot created by then
// reaches it.
func reachableByTime(files []ltxFile, target ltx.TXID) bool {
	var snap ltx.TXID
	for _, f := range files {
		if f.level == SnapshotLevel && f.maxTXID < target && f.maxTXID > snap {
			snap = f.maxTXID
		}
	}
	if snap == 0 {
		return false
	}
	for _, f := range chainFrom(files, snap) {
		if f.maxTXID == target {
			return true
		}
	}
	return false
}
