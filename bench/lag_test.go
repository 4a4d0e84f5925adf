package bench

import (
	"slices"
	"testing"
	"time"

	"github.com/superfly/ltx"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name          string
		lags          []time.Duration
		p50, p99, max time.Duration
	}{
		{"Empty", nil, 0, 0, 0},
		{"One", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"Two", ms(30, 10), 10 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond},
		{"Odd", ms(5, 1, 4, 2, 3), 3 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond},
		{"Hundred", ms(hundred...), 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
		{"HundredAndOne", ms(append(hundred, 5000)...), 51 * time.Millisecond, 100 * time.Millisecond, 5 * time.Second},
		{"Negative", ms(-2, 8, 3), 3 * time.Millisecond, 8 * time.Millisecond, 8 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := summarize(slices.Clone(tc.lags))
			if s.n != len(tc.lags) || s.p50 != tc.p50 || s.p99 != tc.p99 || s.max != tc.max {
				t.Fatalf("summarize = n %d p50 %v p99 %v max %v, want n %d p50 %v p99 %v max %v",
					s.n, s.p50, s.p99, s.max, len(tc.lags), tc.p50, tc.p99, tc.max)
			}
		})
	}
}

func TestParseLagKey(t *testing.T) {
	for _, tc := range []struct {
		rest     string
		level    int
		min, max ltx.TXID
		ok       bool
	}{
		{"0000/0000000000000002-0000000000000002.ltx", 0, 2, 2, true},
		{"0009/0000000000000001-00000000000000ff.ltx", 9, 1, 255, true},
		{"ltx/0/0000000000000003-0000000000000003.ltx", 0, 3, 3, true},
		{"ltx/1/0000000000000001-0000000000000010.ltx", 1, 1, 16, true},
		{"0000/0000000000000003-0000000000000002.ltx", 0, 0, 0, false}, // min > max
		{"0000/0000000000000000-0000000000000002.ltx", 0, 0, 0, false}, // min 0
		{"000a/0000000000000001-0000000000000002.ltx", 0, 0, 0, false}, // level 10
		{"ltx/0/0000000000000003-0000000000000003.ltx.tmp", 0, 0, 0, false},
		{"0000/sub/0000000000000001-0000000000000001.ltx", 0, 0, 0, false},
		{"00000/0000000000000001-0000000000000001.ltx", 0, 0, 0, false},
		{"0000000000000001-0000000000000001.ltx", 0, 0, 0, false},
		{".walsync/meta", 0, 0, 0, false},
	} {
		level, min, max, ok := parseLagKey(tc.rest)
		if ok != tc.ok || (ok && (level != tc.level || min != tc.min || max != tc.max)) {
			t.Errorf("parseLagKey(%q) = %d %d %d %v, want %d %d %d %v", tc.rest, level, min, max, ok, tc.level, tc.min, tc.max, tc.ok)
		}
	}
}

// lf builds a lagFile at a level, with a durable time in seconds (never
// if negative).
func lf(level int, min, max ltx.TXID, durable int64) lagFile {
	d := durable * int64(time.Second)
	if durable < 0 {
		d = never
	}
	return lagFile{key: ltx.FormatFilename(min, max), level: level, minTXID: min, maxTXID: max, durable: d}
}

func TestPlanSteps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []lagFile
		want  []string // the key of the file of each step
	}{
		{"Empty", nil, nil},
		{"Segments", []lagFile{lf(0, 2, 2, 0), lf(0, 1, 1, 0), lf(0, 3, 3, 0)},
			[]string{"0000000000000001-0000000000000001.ltx", "0000000000000002-0000000000000002.ltx", "0000000000000003-0000000000000003.ltx"}},
		{"SnapshotThenSegments", []lagFile{lf(9, 1, 5, 0), lf(0, 6, 6, 0), lf(0, 7, 7, 0)},
			[]string{"0000000000000001-0000000000000005.ltx", "0000000000000006-0000000000000006.ltx", "0000000000000007-0000000000000007.ltx"}},
		{"NoStartIsUnreachable", []lagFile{lf(0, 4, 4, 0), lf(0, 5, 5, 0)}, nil},
		{"GapStopsUntilSnapshot", []lagFile{lf(0, 1, 1, 0), lf(0, 3, 3, 0), lf(9, 1, 4, 0), lf(0, 5, 5, 0)},
			[]string{"0000000000000001-0000000000000001.ltx", "0000000000000001-0000000000000004.ltx", "0000000000000005-0000000000000005.ltx"}},
		{"CompactionNotPreferred", []lagFile{lf(0, 1, 1, 0), lf(0, 2, 2, 0), lf(0, 3, 3, 0), lf(1, 1, 3, 0), lf(1, 2, 3, 0)},
			[]string{"0000000000000001-0000000000000001.ltx", "0000000000000002-0000000000000002.ltx", "0000000000000003-0000000000000003.ltx"}},
		{"CompactionFillsGap", []lagFile{lf(0, 1, 1, 0), lf(1, 2, 3, 0), lf(0, 3, 3, 0), lf(0, 4, 4, 0)},
			[]string{"0000000000000001-0000000000000001.ltx", "0000000000000002-0000000000000003.ltx", "0000000000000004-0000000000000004.ltx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range planSteps(tc.files) {
				if s.txid != s.file.maxTXID {
					t.Errorf("step txid %s, file %s", s.txid, s.file.key)
				}
				got = append(got, s.file.key)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("steps = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRestorableTimes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []lagFile
		want  []int64 // durable time of each step, seconds; -1 never
	}{
		{"InOrder", []lagFile{lf(0, 1, 1, 1), lf(0, 2, 2, 2), lf(0, 3, 3, 3)}, []int64{1, 2, 3}},
		// An object uploaded before the one before it restores nothing
		// until the one before it is there.
		{"OutOfOrder", []lagFile{lf(0, 1, 1, 1), lf(0, 2, 2, 5), lf(0, 3, 3, 3)}, []int64{1, 5, 5}},
		{"Unseen", []lagFile{lf(0, 1, 1, 1), lf(0, 2, 2, -1), lf(0, 3, 3, 3)}, []int64{1, -1, -1}},
		// A compacted file (or a snapshot) reaches a TXID earlier than the
		// chain of segments does.
		{"CompactionEarlier", []lagFile{lf(0, 1, 1, 1), lf(0, 2, 2, 6), lf(0, 3, 3, 7), lf(1, 1, 3, 4)}, []int64{1, 6, 4}},
		{"SnapshotEarlier", []lagFile{lf(0, 1, 1, 1), lf(0, 2, 2, -1), lf(0, 3, 3, 3), lf(9, 1, 3, 8)}, []int64{1, -1, 8}},
		{"OverlapUsesEarliestPredecessor", []lagFile{lf(0, 1, 1, 1), lf(0, 2, 2, 9), lf(1, 2, 3, 2)}, []int64{1, 9, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := planSteps(tc.files)
			restorableTimes(tc.files, steps)
			var got []int64
			for _, s := range steps {
				if s.durable == never {
					got = append(got, -1)
				} else {
					got = append(got, s.durable/int64(time.Second))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("durable = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCommitLags(t *testing.T) {
	sec := int64(time.Second)
	// States after TXIDs 1..4 hold rows up to 1, 3, 3, 6; durable at 10,
	// 12, 13 and 15 s.
	steps := []lagStep{
		{txid: 1, seq: 1, durable: 10 * sec},
		{txid: 2, seq: 3, durable: 12 * sec},
		{txid: 3, seq: 3, durable: 13 * sec},
		{txid: 4, seq: 6, durable: 15 * sec},
	}
	commits := []commit{
		{seq: 1, at: 9 * sec},               // before the window
		{seq: 2, at: 11 * sec},              // in state 2
		{seq: 3, at: 11*sec + sec/2},        // in state 2
		{seq: 4, at: 12 * sec},              // in state 4
		{seq: 6, at: 14*sec + 900*sec/1000}, // in state 4
		{seq: 7, at: 15 * sec},              // never durable
	}
	for _, tc := range []struct {
		name       string
		from, stop int64
		want       []time.Duration
		notDurable int64
	}{
		{"Window", 10 * sec, 20 * sec, []time.Duration{time.Second, time.Second / 2, 3 * time.Second, 100 * time.Millisecond}, 1},
		{"All", 0, 20 * sec, []time.Duration{time.Second, time.Second, time.Second / 2, 3 * time.Second, 100 * time.Millisecond}, 1},
		// Durable at or after the stop counts as not durable.
		{"StopBeforeLast", 10 * sec, 15 * sec, []time.Duration{time.Second, time.Second / 2}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, nd := commitLags(commits, steps, tc.from, tc.stop)
			if !slices.Equal(got, tc.want) || nd != tc.notDurable {
				t.Fatalf("commitLags = %v, %d not durable; want %v, %d", got, nd, tc.want, tc.notDurable)
			}
		})
	}
	t.Run("EarliestLaterState", func(t *testing.T) {
		// A later state durable earlier (a snapshot uploaded before a
		// slow segment) makes the commit durable at its time.
		steps := []lagStep{{txid: 1, seq: 2, durable: 9 * sec}, {txid: 2, seq: 4, durable: 5 * sec}}
		got, nd := commitLags([]commit{{seq: 2, at: 1 * sec}}, steps, 0, 20*sec)
		if want := []time.Duration{4 * time.Second}; !slices.Equal(got, want) || nd != 0 {
			t.Fatalf("commitLags = %v, %d; want %v, 0", got, nd, want)
		}
	})
}

func TestParseCommit(t *testing.T) {
	for _, tc := range []struct {
		line string
		want commit
		ok   bool
	}{
		{"0 2 1700000000000000000", commit{db: 0, seq: 2, at: 1700000000000000000}, true},
		{"17 123 5", commit{db: 17, seq: 123, at: 5}, true},
		{"1 2", commit{}, false},
		{"1 2 3 4", commit{}, false},
		{"-1 2 3", commit{}, false},
		{"a 2 3", commit{}, false},
	} {
		got, err := parseCommit(tc.line)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseCommit(%q) = %+v, %v; want %+v, ok %v", tc.line, got, err, tc.want, tc.ok)
		}
	}
}
