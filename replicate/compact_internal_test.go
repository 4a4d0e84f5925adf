package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/memstore"
)

// compactFixture is a replicated database whose compactor runs on a
// clock the test moves: runDue does the work due, on the test goroutine.
type compactFixture struct {
	*fixture
	skew  atomic.Int64 // added to the wall clock
	dumps map[ltx.TXID]string
	times map[ltx.TXID]time.Time // when each TXID was durable
}

func newCompactFixture(t *testing.T, opts Options) *compactFixture {
	f := &compactFixture{fixture: newFixture(t, opts), dumps: map[ltx.TXID]string{}, times: map[ltx.TXID]time.Time{}}
	f.r.comp.now = func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }
	f.record()
	return f
}

// advance moves the compactor's clock.
func (f *compactFixture) advance(d time.Duration) { f.skew.Add(int64(d)) }

// commit writes n rows in one transaction, syncs and records the state.
func (f *compactFixture) commit(n int) {
	f.t.Helper()
	f.write(n)
	f.sync()
	f.record()
}

func (f *compactFixture) record() {
	f.t.Helper()
	txid := f.d.TXID()
	f.dumps[txid] = runSQLite(f.t, f.path, ".dump")
	f.times[txid] = time.Now()
	nextMilli(time.Now())
}

// files lists the database's LTX files by level.
func (f *compactFixture) files() map[int][]ltxFile {
	f.t.Helper()
	all, err := listLTXFiles(f.ctx, f.store, "db")
	if err != nil {
		f.t.Fatal(err)
	}
	by := map[int][]ltxFile{}
	for _, lf := range all {
		by[lf.level] = append(by[lf.level], lf)
	}
	return by
}

// restoreAt restores with opts and checks the result is exactly a
// recorded state; it returns the TXID restored.
func (f *compactFixture) restoreAt(opts RestoreOptions) ltx.TXID {
	f.t.Helper()
	out := filepath.Join(f.t.TempDir(), "out.db")
	res, err := Restore(f.ctx, f.store, "db", out, opts)
	if err != nil {
		f.t.Fatalf("restore %+v: %v", opts, err)
	}
	want, ok := f.dumps[res.TXID]
	if !ok {
		f.t.Fatalf("restore %+v: TXID %s is not a recorded state", opts, res.TXID)
	}
	if got := runSQLite(f.t, out, ".dump"); got != want {
		f.t.Fatalf("restore %+v: state at TXID %s differs from the source's", opts, res.TXID)
	}
	return res.TXID
}

func nextMilli(t time.Time) {
	for time.Now().UnixMilli() <= t.UnixMilli() {
	}
}

func fileKeys(files []ltxFile) []string {
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimPrefix(f.key, "db/"))
	}
	return out
}

// TestCompactionLevels drives segments through levels 1, 2 and 3 at their
// boundaries and checks the files each level holds, that compacted
// segments are deleted once old enough (but the newest never), that every
// state stays restorable from the fewer files, and that a database with
// nothing new costs no request.
func TestCompactionLevels(t *testing.T) {
	f := newCompactFixture(t, Options{
		SyncInterval:        SyncImmediately,
		CompactionIntervals: []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute},
		L0Retention:         3 * time.Minute,
		Retention:           -1,
	})
	for i := range 5 {
		f.commit(3 + i)
	}
	gets := f.r.Metrics().Requests["GET"]
	f.r.comp.runDue(f.ctx) // first activity: every level compacted at once
	// Level 1 reads the segments from the stage; levels 2 and 3 GET their
	// one input each.
	if got := f.r.Metrics().Requests["GET"] - gets; got != 2 {
		t.Fatalf("%d GETs for the first compaction, want 2 (the segments come from the stage)", got)
	}
	by := f.files()
	if len(by[0]) != 5 || len(by[1]) != 1 || len(by[2]) != 1 || len(by[3]) != 1 {
		t.Fatalf("after the first compaction: L0 %v L1 %v L2 %v L3 %v", fileKeys(by[0]), fileKeys(by[1]), fileKeys(by[2]), fileKeys(by[3]))
	}
	if by[1][0].minTXID != by[0][0].minTXID || by[1][0].maxTXID != by[0][4].maxTXID {
		t.Fatalf("L1 %v does not cover L0 %v", fileKeys(by[1]), fileKeys(by[0]))
	}
	last := f.restoreAt(RestoreOptions{})
	if last != f.d.TXID() {
		t.Fatalf("restored TXID %s, want %s", last, f.d.TXID())
	}

	// Two more rounds, one L1 boundary apart: level 1 gets a file each;
	// level 2's boundary comes with the second.
	for round := range 2 {
		f.advance(time.Minute)
		f.commit(10)
		f.commit(2)
		f.r.comp.runDue(f.ctx)
		by = f.files()
		if len(by[1]) != 2+round {
			t.Fatalf("round %d: L1 %v", round, fileKeys(by[1]))
		}
	}
	by = f.files()
	if len(by[2]) < 2 {
		t.Fatalf("L2 %v: want a second file at the 2-minute boundary", fileKeys(by[2]))
	}
	// Segments are older than L0Retention now: all compacted ones go but
	// the newest.
	f.advance(4 * time.Minute)
	f.r.comp.runDue(f.ctx)
	by = f.files()
	if len(by[0]) != 1 || by[0][0].maxTXID != f.d.TXID() {
		t.Fatalf("L0 after retention: %v, want the newest only (TXID %s)", fileKeys(by[0]), f.d.TXID())
	}
	if got := by[3][len(by[3])-1].maxTXID; got != f.d.TXID() {
		t.Fatalf("L3 ends at %s, want %s", got, f.d.TXID())
	}
	f.restoreAt(RestoreOptions{})
	for _, lf := range append(append(by[1], by[2]...), by[3]...) {
		f.restoreAt(RestoreOptions{TXID: lf.maxTXID}) // every kept file end is a restore point
	}

	// Idle: nothing new, so no request, however much time passes.
	before := f.r.Metrics().Requests
	for range 5 {
		f.advance(time.Hour)
		f.r.comp.runDue(f.ctx)
	}
	if after := f.r.Metrics().Requests; fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("an idle database made requests: before %v, after %v", before, after)
	}
	f.r.comp.mu.Lock()
	n := len(f.r.comp.active)
	f.r.comp.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d databases still active after catching up", n)
	}
}

// TestRetentionKeepsWindow deletes what the window does not need after
// three snapshots and checks that every instant inside the window still
// restores, exactly, a state of the source at or before it; the base
// snapshot and the newest one stay.
func TestRetentionKeepsWindow(t *testing.T) {
	f := newCompactFixture(t, Options{
		SyncInterval:        SyncImmediately,
		CompactionIntervals: []time.Duration{time.Minute, 2 * time.Minute},
		L0Retention:         time.Minute,
		Retention:           -1, // set below, once the window start is known
	})
	var snapAt []time.Time
	for phase := range 3 {
		for i := range 4 {
			f.commit(2 + phase + i)
		}
		f.r.comp.runDue(f.ctx)
		f.advance(time.Minute)
		if phase > 0 {
			if err := f.d.Snapshot(f.ctx); err != nil {
				t.Fatal(err)
			}
			f.record()
		}
		snapAt = append(snapAt, time.Now())
		nextMilli(time.Now().Add(5 * time.Millisecond))
	}
	f.commit(7)
	f.commit(1)
	snaps := f.files()[SnapshotLevel]
	if len(snaps) != 3 {
		t.Fatalf("snapshots %v, want 3", fileKeys(snaps))
	}
	// Compactions and segment deletions first, then the restore points
	// the target holds are known.
	f.advance(2 * time.Minute)
	f.r.comp.runDue(f.ctx)
	var points []ltx.TXID
	for l, files := range f.files() {
		for _, lf := range files {
			if l != SnapshotLevel && lf.maxTXID > snaps[1].maxTXID {
				points = append(points, lf.maxTXID)
			}
		}
	}

	// The window starts after the second snapshot: it is the base.
	windowStart := snapAt[1].Add(2 * time.Millisecond)
	f.r.opts.Retention = time.Since(windowStart) + time.Duration(f.skew.Load())
	f.r.comp.mu.Lock() // retention due now
	if f.r.comp.active[f.d] == nil {
		f.r.comp.active[f.d] = &compactState{}
	}
	f.r.comp.active[f.d].keepDue = f.r.comp.now()
	f.r.comp.mu.Unlock()
	f.r.comp.runDue(f.ctx)

	by := f.files()
	if got := by[SnapshotLevel]; len(got) != 2 || got[0].maxTXID != snaps[1].maxTXID {
		t.Fatalf("snapshots after retention: %v, want the base %s and the newest", fileKeys(got), snaps[1].key)
	}
	for l := range SnapshotLevel {
		for _, lf := range by[l] {
			if lf.maxTXID <= snaps[1].maxTXID {
				t.Errorf("level %d file %s is covered by the base snapshot but kept", l, lf.key)
			}
		}
	}
	if f.r.Metrics().Deleted == 0 {
		t.Fatal("nothing deleted")
	}
	// Every restore point after the base is still one, exactly.
	for _, txid := range points {
		if got := f.restoreAt(RestoreOptions{TXID: txid}); got != txid {
			t.Fatalf("restore at TXID %s gave %s", txid, got)
		}
	}
	// Every recorded instant inside the window, and the midpoints,
	// restores a state committed at or before it.
	var instants []time.Time
	for _, at := range f.times {
		if !at.Before(windowStart) {
			instants = append(instants, at, at.Add(time.Millisecond/2))
		}
	}
	instants = append(instants, windowStart, time.Now())
	slices.SortFunc(instants, func(a, b time.Time) int { return a.Compare(b) })
	for _, ts := range instants {
		txid := f.restoreAt(RestoreOptions{Timestamp: ts})
		if f.times[txid].After(ts.Add(time.Millisecond)) {
			t.Fatalf("restore at %s gave TXID %s, committed after it (%s)", ts.Format(time.RFC3339Nano), txid, f.times[txid].Format(time.RFC3339Nano))
		}
	}
	if got := f.restoreAt(RestoreOptions{}); got != f.d.TXID() {
		t.Fatalf("latest restored TXID %s, want %s", got, f.d.TXID())
	}
}

// TestL0KeepsUncompacted checks that the deletion of old segments, due
// between two level-1 boundaries, spares those no level-1 file covers yet.
func TestL0KeepsUncompacted(t *testing.T) {
	f := newCompactFixture(t, Options{
		SyncInterval:        SyncImmediately,
		CompactionIntervals: []time.Duration{10 * time.Minute},
		L0Retention:         time.Minute,
		Retention:           -1,
	})
	// The compactor's clock 1 s after a 10-minute boundary: the next one
	// is not reached below, whatever the wall clock.
	now := time.Now()
	f.skew.Store(int64(now.Truncate(10 * time.Minute).Add(10*time.Minute + time.Second).Sub(now)))
	for i := range 3 {
		f.commit(2 + i)
	}
	f.r.comp.runDue(f.ctx) // level 1 covers these
	top := f.files()[1][0].maxTXID
	for i := range 4 {
		f.commit(5 + i) // not covered until the next boundary
	}
	f.advance(2 * time.Minute)
	f.r.comp.runDue(f.ctx)
	by := f.files()
	var above []ltx.TXID
	for _, lf := range by[0] {
		if lf.maxTXID < top {
			// (The one ending at top was the newest segment at the last
			// deletion pass: the next level-1 compaction deletes it.)
			t.Errorf("covered segment %s kept past L0Retention", lf.key)
		} else if lf.maxTXID > top {
			above = append(above, lf.maxTXID)
		}
	}
	if len(above) != 4 {
		t.Fatalf("segments after level 1's TXID %s: %v, want the 4 not compacted yet", top, fileKeys(by[0]))
	}
	for txid := range f.dumps {
		if txid > top {
			f.restoreAt(RestoreOptions{TXID: txid})
		}
	}
}

// TestExpired checks which files retention deletes: the base is the
// newest snapshot before the window start; older snapshots and files it
// covers go; files ending after it stay, straddling ones included; the
// newest snapshot always stays.
func TestExpired(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	file := func(level int, lo, hi ltx.TXID, age time.Duration) ltxFile {
		return ltxFile{level: level, minTXID: lo, maxTXID: hi, key: ltxKey("db", level, lo, hi), modTime: t0.Add(-age)}
	}
	files := []ltxFile{
		file(9, 1, 10, 50*time.Hour), file(9, 1, 40, 30*time.Hour), file(9, 1, 70, time.Hour),
		file(0, 11, 20, 49*time.Hour), file(1, 11, 45, 29*time.Hour), file(3, 41, 80, time.Hour),
		file(0, 39, 40, 30*time.Hour), file(0, 71, 80, time.Minute),
	}
	tests := []struct {
		name  string
		start time.Time
		want  []string
	}{
		{"window after the second snapshot", t0.Add(-24 * time.Hour), []string{"0009/0000000000000001-000000000000000a.ltx", "0000/000000000000000b-0000000000000014.ltx", "0000/0000000000000027-0000000000000028.ltx"}},
		{"window before every snapshot", t0.Add(-100 * time.Hour), []string{}},
		{"window after every snapshot", t0, []string{"0009/0000000000000001-000000000000000a.ltx", "0009/0000000000000001-0000000000000028.ltx", "0000/000000000000000b-0000000000000014.ltx", "0001/000000000000000b-000000000000002d.ltx", "0000/0000000000000027-0000000000000028.ltx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := []string{}
			for _, k := range expired(files, tt.start) {
				got = append(got, strings.TrimPrefix(k, "db/"))
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("expired = %v, want %v", got, want)
			}
		})
	}
}

// TestCompactionRun checks the inputs chosen for one merge.
func TestCompactionRun(t *testing.T) {
	f := func(lo, hi ltx.TXID) ltxFile { return ltxFile{minTXID: lo, maxTXID: hi} }
	tests := []struct {
		name string
		src  []ltxFile
		top  ltx.TXID
		want []ltxFile
	}{
		{"all after top", []ltxFile{f(1, 3), f(4, 5), f(6, 9)}, 0, []ltxFile{f(1, 3), f(4, 5), f(6, 9)}},
		{"skips covered", []ltxFile{f(1, 3), f(4, 5), f(6, 9)}, 5, []ltxFile{f(6, 9)}},
		{"straddler included", []ltxFile{f(1, 3), f(4, 7), f(8, 9)}, 5, []ltxFile{f(4, 7), f(8, 9)}},
		{"stops at a gap", []ltxFile{f(4, 5), f(7, 9)}, 3, []ltxFile{f(4, 5)}},
		{"starts after a gap", []ltxFile{f(4, 5), f(7, 9), f(10, 10)}, 5, []ltxFile{f(7, 9), f(10, 10)}},
		{"nothing new", []ltxFile{f(1, 3)}, 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compactionRun(tt.src, tt.top); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	var long []ltxFile
	for i := range ltx.TXID(maxMergeInputs + 10) {
		long = append(long, f(i+1, i+1))
	}
	if got := compactionRun(long, 0); len(got) != maxMergeInputs {
		t.Fatalf("run of %d files, want at most %d", len(got), maxMergeInputs)
	}
}

// TestCompactionAfterRestart: segments uploaded by an earlier process are
// not staged; level 1 downloads them and covers them with the new ones.
func TestCompactionAfterRestart(t *testing.T) {
	opts := Options{
		SyncInterval:        SyncImmediately,
		CompactionIntervals: []time.Duration{time.Minute},
		Retention:           -1,
	}
	f := newCompactFixture(t, opts)
	for i := range 4 {
		f.commit(2 + i)
	}
	if err := f.r.Close(); err != nil {
		t.Fatal(err)
	}
	f.start(opts)
	f.r.comp.now = func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }
	f.commit(3)
	f.commit(4)
	gets := f.r.Metrics().Requests["GET"]
	f.r.comp.runDue(f.ctx)
	if got := f.r.Metrics().Requests["GET"] - gets; got != 4 {
		t.Fatalf("%d GETs, want 4: the segments of the earlier process", got)
	}
	by := f.files()
	if len(by[1]) != 1 || by[1][0].minTXID != by[0][0].minTXID || by[1][0].maxTXID != f.d.TXID() {
		t.Fatalf("L1 %v, want one file covering L0 %v", fileKeys(by[1]), fileKeys(by[0]))
	}
	f.restoreAt(RestoreOptions{})
}

// compactOnGet runs the compactor the first time a segment is read, as a
// live writer may while a restore downloads: the segment is deleted
// between the restore's listing and its GET.
type compactOnGet struct {
	Storage
	once func()
}

func (s *compactOnGet) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.Contains(key, "/0000/") && s.once != nil {
		s.once()
		s.once = nil
	}
	return s.Storage.Get(ctx, key, off, n)
}

// TestRestoreReplansDeleted: files of a restore's plan deleted by
// compaction while it runs make it plan again from a new listing, and it
// restores the latest state; it does not fail on the vanished object.
func TestRestoreReplansDeleted(t *testing.T) {
	f := newCompactFixture(t, Options{
		SyncInterval:        SyncImmediately,
		CompactionIntervals: []time.Duration{time.Minute},
		L0Retention:         time.Minute,
		Retention:           -1,
	})
	f.commit(3)
	f.r.comp.runDue(f.ctx)
	for i := range 3 {
		f.commit(4 + i) // segments after level 1: the latest restore reads them
	}
	store := &compactOnGet{Storage: f.store, once: func() {
		f.advance(3 * time.Minute) // level 1 due, its segments old enough to go
		f.r.comp.runDue(f.ctx)
		f.advance(3 * time.Minute)
		f.r.comp.runDue(f.ctx)
	}}
	out := filepath.Join(t.TempDir(), "out.db")
	res, err := Restore(f.ctx, store, "db", out, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if store.once != nil {
		t.Fatal("the restore read no segment: the test did not race it")
	}
	if res.TXID != f.d.TXID() || runSQLite(t, out, ".dump") != f.dumps[res.TXID] {
		t.Fatalf("restored TXID %s, want %s with its state", res.TXID, f.d.TXID())
	}
	if got := f.r.Metrics().Deleted; got == 0 {
		t.Fatal("compaction deleted no segment during the restore")
	}
}

// failingLists fails the LIST calls of a level while down is set.
type failingLists struct {
	Storage
	down *atomic.Bool
}

func (s failingLists) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	if s.down.Load() && strings.HasSuffix(prefix, "/0000/") {
		return func(yield func(ObjectInfo, error) bool) { yield(ObjectInfo{}, errors.New("injected: target down")) }
	}
	return s.Storage.List(ctx, prefix, startAfter)
}

// TestCompactionFailureLogsOnce: a compaction that keeps failing is
// counted every time but logged at WARN once until one succeeds, and
// the work is done once the target is back.
func TestCompactionFailureLogsOnce(t *testing.T) {
	var down atomic.Bool
	f := &compactFixture{dumps: map[ltx.TXID]string{}, times: map[ltx.TXID]time.Time{}}
	f.fixture = &fixture{t: t, ctx: context.Background(), dir: t.TempDir(), store: memstore.New(), log: &logBuffer{}}
	f.path = filepath.Join(f.dir, "db.sqlite")
	f.wrap = func(s Storage) Storage { return failingLists{Storage: s, down: &down} }
	runSQLite(t, f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER, v BLOB);")
	f.openApp()
	f.start(Options{SyncInterval: SyncImmediately, CompactionIntervals: []time.Duration{time.Minute}, Retention: -1})
	f.r.comp.now = func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }
	f.record()

	down.Store(true)
	for range 3 {
		f.commit(2)
		f.r.comp.runDue(f.ctx)
		f.advance(time.Minute)
	}
	if got := f.r.Metrics().CompactionErrors; got != 3 {
		t.Fatalf("%d compaction errors counted, want 3", got)
	}
	if n := strings.Count(f.log.String(), `level=WARN msg="compaction failed`); n != 1 {
		t.Fatalf("%d WARN lines for 3 failures, want 1:\n%s", n, f.log.String())
	}
	down.Store(false)
	f.r.comp.runDue(f.ctx)
	if by := f.files(); len(by[1]) != 1 || by[1][0].maxTXID != f.d.TXID() {
		t.Fatalf("after the target is back: L1 %v, want one file up to %s", fileKeys(by[1]), f.d.TXID())
	}
	down.Store(true)
	f.commit(2)
	f.advance(time.Minute)
	f.r.comp.runDue(f.ctx)
	if n := strings.Count(f.log.String(), `level=WARN msg="compaction failed`); n != 2 {
		t.Fatalf("%d WARN lines, want a second after the success", n)
	}
}

// TestNoCompactionRetentionHourly: without compaction levels, retention
// runs an hour after the first segment, not at every upload.
func TestNoCompactionRetentionHourly(t *testing.T) {
	f := newCompactFixture(t, Options{SyncInterval: SyncImmediately, CompactionIntervals: []time.Duration{}, Retention: time.Hour})
	lists := func() int64 { return f.r.Metrics().Requests["LIST"] }
	before := lists()
	for range 5 {
		f.commit(2)
		f.r.comp.runDue(f.ctx)
	}
	if got := lists() - before; got != 0 {
		t.Fatalf("%d LISTs within the first hour, want 0", got)
	}
	f.advance(time.Hour + time.Second)
	f.r.comp.runDue(f.ctx)
	if got := lists() - before; got != 1 {
		t.Fatalf("%d LISTs after an hour, want 1 (one retention pass)", got)
	}
	for range 3 {
		f.commit(1)
		f.r.comp.runDue(f.ctx)
	}
	if got := lists() - before; got != 1 {
		t.Fatalf("%d LISTs, want still 1", got)
	}
}

// TestCompactorRuns: under Run, the compactor's own goroutine compacts
// the segments of databases written through the scheduler, at most
// CompactionConcurrency at a time, and calls AfterCompactions once the
// jobs started together are done.
func TestCompactorRuns(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	done := make(chan struct{}, 100)
	r := New(store, Options{SyncInterval: SyncImmediately, CompactionIntervals: []time.Duration{time.Hour},
		CompactionConcurrency: 2, Retention: -1, AfterCompactions: func() { done <- struct{}{} }})
	defer r.Close()
	r.comp.hookEvery = 0 // a call after every burst: the test waits on them
	dir := t.TempDir()
	for i := range 6 {
		p := filepath.Join(dir, fmt.Sprintf("%d.db", i))
		runSQLite(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER);")
		if _, err := r.Add(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	stop := runReplicator(t, r)
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		runSQLite(t, filepath.Join(dir, fmt.Sprintf("%d.db", i)), "BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); COMMIT;")
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Every database's segments reach level 1 (first activity: at once).
	for compacted := 0; compacted < 6; {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%d of 6 databases compacted within a minute", compacted)
		}
		compacted = 0
		for _, d := range r.DBs() {
			files, err := listLevel(ctx, store, d.Name(), 1, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(files) > 0 && files[len(files)-1].maxTXID == d.TXID() {
				compacted++
			}
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := r.comp.running.Load(); got != 0 {
		t.Fatalf("%d jobs still running after Run returned", got)
	}
	r.comp.mu.Lock()
	n := len(r.comp.active)
	r.comp.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d databases (and their stage files) kept after Run returned", n)
	}
}
