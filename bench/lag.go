package bench

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// Replication lag, as the bench measures it (docs/benchmarks.md,
// "Replication lag"): a commit's lag is the time from the writer's commit
// (SQLite acknowledged it) to the earliest moment at which the objects
// durable in the target restored a state holding it. The pure part of the
// computation is here; lagrun.go reads the target.

// Times in this file are Unix nanoseconds of the wall clock: the writer,
// the tools and the bench run on one host.
const (
	always = math.MinInt64 // before anything: the empty state before TXID 1
	never  = math.MaxInt64 // not durable (or not seen by the clock)
)

// lagFile is one LTX file of a database in the target.
type lagFile struct {
	key     string
	level   int
	minTXID ltx.TXID
	maxTXID ltx.TXID
	durable int64 // when it became durable; never if the clock did not see it
}

// parseLagKey parses the key of an LTX file below a database's prefix, in
// either layout: "<level, 4 hex digits>/<min>-<max>.ltx" (walsync on any
// target, Litestream on S3) or "ltx/<level, decimal>/<min>-<max>.ltx"
// (Litestream's file replica).
func parseLagKey(rest string) (level int, minTXID, maxTXID ltx.TXID, ok bool) {
	dir, base, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	var lv uint64
	var err error
	if dir == "ltx" {
		if dir, base, found = strings.Cut(base, "/"); !found {
			return 0, 0, 0, false
		}
		lv, err = strconv.ParseUint(dir, 10, 8)
	} else if len(dir) == 4 {
		lv, err = strconv.ParseUint(dir, 16, 8)
	} else {
		return 0, 0, 0, false
	}
	if err != nil || lv > 9 || strings.Contains(base, "/") {
		return 0, 0, 0, false
	}
	minTXID, maxTXID, err = ltx.ParseFilename(base)
	if err != nil || minTXID == 0 || minTXID > maxTXID {
		return 0, 0, 0, false
	}
	return int(lv), minTXID, maxTXID, true
}

// lagStep is one state the files can restore: the state after TXID txid,
// reached from the step before (or from nothing) by applying file.
type lagStep struct {
	txid    ltx.TXID
	file    lagFile
	seq     int64 // the highest writer sequence number (row id) the state holds
	durable int64 // the earliest time the target could restore it; never if not durable
}

// planSteps returns every TXID the files can restore, in ascending order,
// each with a file that reaches it from the step before: a file applies to
// the state after TXID cur if min <= cur+1 and max > cur (a snapshot, min 1,
// always does). Among several, the one spanning fewest TXIDs is taken
// (less to apply), then the lowest level. A TXID no file can reach from
// the step before cannot be reached from any earlier step either.
func planSteps(files []lagFile) []lagStep {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b lagFile) int {
		return cmp.Or(cmp.Compare(a.maxTXID, b.maxTXID), cmp.Compare(b.minTXID, a.minTXID), cmp.Compare(a.level, b.level))
	})
	var steps []lagStep
	cur := ltx.TXID(0)
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].maxTXID == sorted[i].maxTXID {
			j++
		}
		// sorted[i:j] end at the same TXID, largest min (fewest TXIDs) first.
		for _, f := range sorted[i:j] {
			if f.minTXID <= cur+1 {
				steps = append(steps, lagStep{txid: f.maxTXID, file: f})
				cur = f.maxTXID
				break
			}
		}
		i = j
	}
	return steps
}

// restorableTimes sets the durable time of each step: the earliest time
// at which a chain of durable files restored it. A file ending at the
// step's TXID X gives max(its own time, the earliest time of a step Y it
// applies to, min-1 <= Y < X), the empty state before TXID 1 being there
// always; the step takes the earliest over those files. When objects are
// uploaded in TXID order this is the time the step's own file became
// durable; an object uploaded before its predecessor counts from the
// predecessor's time.
func restorableTimes(files []lagFile, steps []lagStep) {
	for i := range steps {
		x := steps[i].txid
		at := int64(never)
		for _, f := range files {
			if f.maxTXID != x {
				continue
			}
			pred := int64(never)
			if f.minTXID == 1 {
				pred = always
			} else {
				for _, s := range steps[:i] {
					if s.txid >= f.minTXID-1 {
						pred = min(pred, s.durable)
					}
				}
			}
			at = min(at, max(f.durable, pred))
		}
		steps[i].durable = at
	}
}

// commitLags returns the lag of each commit made at or after from, commits
// being those of the database whose steps are given: the earliest durable
// time of a step holding it (seq at least the commit's) minus the commit's
// time. A commit no step made durable before stop is counted in
// notDurable instead.
func commitLags(commits []commit, steps []lagStep, from, stop int64) (lags []time.Duration, notDurable int64) {
	// held[i] is the highest sequence held by steps[:i+1]; first[i] the
	// earliest durable time among steps[i:].
	held := make([]int64, len(steps))
	first := make([]int64, len(steps))
	for i, s := range steps {
		held[i] = s.seq
		if i > 0 {
			held[i] = max(held[i], held[i-1])
		}
	}
	for i := len(steps) - 1; i >= 0; i-- {
		first[i] = steps[i].durable
		if i+1 < len(steps) {
			first[i] = min(first[i], first[i+1])
		}
	}
	for _, c := range commits {
		if c.at < from {
			continue
		}
		i, _ := slices.BinarySearch(held, c.seq)
		if i == len(steps) || first[i] >= stop {
			notDurable++
			continue
		}
		lags = append(lags, time.Duration(first[i]-c.at))
	}
	return lags, notDurable
}

// lagSummary sums up the lags of a run.
type lagSummary struct {
	n             int
	p50, p99, max time.Duration
}

// summarize returns the nearest-rank percentiles of lags, which it sorts.
func summarize(lags []time.Duration) lagSummary {
	slices.Sort(lags)
	s := lagSummary{n: len(lags), p50: percentile(lags, 50), p99: percentile(lags, 99)}
	if len(lags) > 0 {
		s.max = lags[len(lags)-1]
	}
	return s
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest value with at least p % of the values at or below it; 0 if
// there are none.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := (p*len(sorted) + 99) / 100 // ceil(p/100 × n), 1-based
	return sorted[max(k, 1)-1]
}
