package modeltest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Runner drives one database through random actions and checks the
// invariants after every step. The test of a capture path fills in the
// configuration fields, draws its own configuration from [Runner.Init],
// calls [Runner.CreateDB], starts replication, and calls [Runner.Run].
type Runner struct {
	T     *testing.T
	Cfg   *Config
	Repro string // go test arguments that select this test, for the report

	DB      string // the application's database
	Scratch string // a directory outside anything replicated

	// SyncInterval is the replicator's sync interval.
	SyncInterval time.Duration
	// CheckpointFrames is walsync's --checkpoint-frames when walsync
	// owns WAL restarts (the watch path), or 0 when the application
	// restarts the WAL itself (the VFS path).
	CheckpointFrames int
	// Pinned is set where walsync's pin is documented to make TRUNCATE and
	// RESTART checkpoints and leaving WAL mode return busy.
	Pinned bool
	// MaxTxnBytes caps the size of one transaction.
	MaxTxnBytes int64
	// Default is how long a run lasts without -model.duration or -model.steps.
	Default time.Duration

	// LongKinds name writers that stay open across steps, OnceKinds
	// writers that open, run one transaction and close.
	LongKinds, OnceKinds []string
	// Open opens a writer of a kind on the database db.
	Open func(kind, db string) (Writer, error)
	// Restore restores the live target into out, reporting false if the
	// target holds nothing for the database yet.
	Restore func(ctx context.Context, out string) (bool, error)
	// Resources returns what the replicator holds (nil: not checked);
	// counts may grow by Slack at most over the run.
	Resources func() (Resources, error)
	Slack     Resources
	// ResourcesWhenClosed compares resources only while no writer is
	// open (for an in-process replicator, whose process also holds the
	// writers' descriptors).
	ResourcesWhenClosed bool
	// Replicating reports whether the open writers, by kind, make the
	// database replicated (nil: always). In-app replication follows the
	// VFS's connections: with none open, the replicator releases the
	// database, and commits of other connections are replicated once a
	// VFS connection opens it again.
	Replicating func(kinds []string) bool
	// Inspect opens a restored file to read it (default: an in-process
	// connection; the sqlite3 shell is much faster under -race).
	Inspect func(path string) (Writer, error)
	// Logs returns the tail of the replicator's log, for a failure report.
	Logs func() string
	// Actions are the path's own actions, added to the shared ones.
	Actions []Action

	rng       *rand.Rand
	model     *Model
	actions   []Action
	slots     []*slot
	slotSeq   int
	start     time.Time
	step      int
	action    string
	history   []string
	counts    map[string]int
	pending   []obligation
	down      bool      // replication stopped: repDown or kindsDown
	repDown   bool      // walsync killed, replicator closed
	kindsDown bool      // no open writer replicates the database (Replicating)
	upAt      time.Time // when replication last (re)started
	last      State     // newest state restored
	restores  int
	wal       walTrack
	resBase   Resources
	resMax    Resources
	maxLag    time.Duration
	maxCommit time.Duration
	restoreN  int
}

// slot is a long-lived writer.
type slot struct {
	id       int
	kind     string
	w        Writer
	reader   bool  // holds an open read transaction
	readSeq  int64 // last sequence number when it began
	autockpt int
	cache    int
}

func (s *slot) String() string { return fmt.Sprintf("%s#%d", s.kind, s.id) }

// obligation is a commit that a restore must hold once its deadline passed.
type obligation struct {
	at    time.Time
	seq   int64
	epoch int64
	bytes int64
}

// walTrack follows the WAL-index between steps.
type walTrack struct {
	maxTxnFrames uint32
	maxFrames    uint32
	overSince    time.Time
	overSteps    int
	stuckSince   time.Time // first incomplete checkpoint with no reader open
	stuckN       int
}

// Violation is a failed invariant.
type Violation struct {
	Invariant string
	Msg       string
}

func (v *Violation) Error() string { return v.Invariant + ": " + v.Msg }

// Violationf returns a *Violation of the named invariant.
func Violationf(invariant, format string, args ...any) error {
	return &Violation{Invariant: invariant, Msg: fmt.Sprintf(format, args...)}
}

// Rand returns the run's random source.
func (r *Runner) Rand() *rand.Rand { return r.rng }

// Model returns the model of the database.
func (r *Runner) Model() *Model { return r.model }

// Logf logs a line of the run.
func (r *Runner) Logf(format string, args ...any) {
	r.T.Helper()
	r.T.Logf("model: "+format, args...)
}

// Init seeds the run (with -model.seed, or a new random seed that it
// logs) and returns its random source, from which the test may draw its
// configuration. CreateDB calls it if the test did not.
// Compaction picks, from a stream of its own (so that a seed's steps do
// not depend on it), the compaction and retention of the run: half the
// seeds compact fast (levels at 1 s, 2 s and 4 s, segments deleted 2 s
// after a level-1 file covers them, restore points kept 1 minute) so
// that deletions race the live restores; the others run the defaults.
// It returns the intervals (nil: the defaults), the segment retention and
// the retention.
func (r *Runner) Compaction() (intervals []time.Duration, l0, keep time.Duration) {
	rng := rand.New(rand.NewPCG(r.Cfg.Seed, 0xc0))
	if rng.IntN(2) == 0 {
		return nil, 0, 0
	}
	intervals = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	r.Logf("compaction %v, l0-retention 2s, retention 1m", intervals)
	return intervals, 2 * time.Second, time.Minute
}

func (r *Runner) Init() *rand.Rand {
	r.T.Helper()
	if r.rng != nil {
		return r.rng
	}
	if r.Cfg.Seed == 0 {
		r.Cfg.Seed = rand.Uint64() % 1_000_000_000
	}
	r.rng = rand.New(rand.NewPCG(r.Cfg.Seed, 0x5eed))
	r.counts = map[string]int{}
	r.Logf("seed %d (reproduce with %s -model.seed=%d)", r.Cfg.Seed, r.Repro, r.Cfg.Seed)
	return r.rng
}

// CreateDB creates the database with [Schema] through a one-shot writer
// and starts the model. Call it before replication starts.
func (r *Runner) CreateDB() {
	r.T.Helper()
	r.Init()
	if err := os.MkdirAll(filepath.Dir(r.DB), 0o755); err != nil {
		r.T.Fatal(err)
	}
	w, err := r.Open(r.OnceKinds[0], r.DB)
	if err != nil {
		r.T.Fatal(err)
	}
	if _, err := w.Exec(Schema()...); err != nil {
		r.T.Fatalf("create %s: %v", r.DB, err)
	}
	if err := w.Close(); err != nil {
		r.T.Fatal(err)
	}
	r.model = NewModel()
	r.upAt = time.Now()
}

// Run runs the steps, then the final checks.
func (r *Runner) Run() {
	r.T.Helper()
	all := append(sharedActions(), r.Actions...)
	var err error
	if r.actions, err = selectActions(all, r.Cfg.Actions); err != nil {
		r.T.Fatal(err)
	}
	var names []string
	for _, a := range r.actions {
		names = append(names, a.Name)
	}
	r.Logf("actions: %s", strings.Join(names, ","))
	long, once, err := selectKinds(r.LongKinds, r.OnceKinds, r.Cfg.Writers)
	if err != nil {
		r.T.Fatal(err)
	}
	if len(long) == 0 || len(once) == 0 {
		r.T.Fatalf("-model.writers=%s leaves no long-lived or no one-shot writer (kinds %v, %v)", r.Cfg.Writers, r.LongKinds, r.OnceKinds)
	}
	r.LongKinds, r.OnceKinds = long, once
	budget := r.Cfg.Duration
	if budget == 0 {
		budget = r.Default
	}
	r.start = time.Now()
	r.upAt = r.start
	r.T.Cleanup(r.closeAll)
	if err := r.ReopenApp(); err != nil {
		r.fail(err)
	}
	for r.step = 1; ; r.step++ {
		if r.Cfg.Steps > 0 && r.step > r.Cfg.Steps || r.Cfg.Steps == 0 && time.Since(r.start) > budget {
			break
		}
		a := r.pick()
		r.action = a.Name
		began := time.Now()
		outcome, err := a.Do(r)
		r.counts[a.Name+":"+outcome]++
		r.note(fmt.Sprintf("-> %s (%v)", outcome, time.Since(began).Round(time.Millisecond)))
		if err != nil {
			r.fail(err)
		}
		if err := r.Check(false); err != nil {
			r.fail(err)
		}
	}
	r.step--
	r.action = "final"
	if err := r.final(); err != nil {
		r.fail(err)
	}
	r.Logf("passed: %s", r.summary())
	if full := r.saveHistory(); full != "" {
		r.Logf("history: %s", full)
	}
}

// saveHistory writes the run's history to a file named by its seed and
// returns its path ("" if it cannot).
func (r *Runner) saveHistory() string {
	full := filepath.Join(os.TempDir(), fmt.Sprintf("walsync-model-%d.history", r.Cfg.Seed))
	if os.WriteFile(full, []byte(strings.Join(r.history, "\n")+"\n"), 0o644) != nil {
		return ""
	}
	return full
}

// final ends every read transaction, waits for the target to hold every
// commit, and reads the database as the application.
func (r *Runner) final() error {
	r.note("final: end readers, catch up, read live")
	for _, s := range r.slots {
		if s.reader {
			if _, err := s.w.Exec("COMMIT"); err != nil {
				return Violationf("writer-error", "%v: end read transaction: %v", s, err)
			}
			s.reader = false
		}
	}
	if err := r.Check(true); err != nil {
		return err
	}
	return r.VerifyLive(nil)
}

// pick chooses a ready action by weight.
func (r *Runner) pick() Action {
	var ready []Action
	total := 0
	for _, a := range r.actions {
		if a.Ready == nil || a.Ready(r) {
			ready = append(ready, a)
			total += a.Weight
		}
	}
	if total == 0 {
		r.T.Fatalf("model: no action is ready among %d", len(r.actions))
	}
	n := r.rng.IntN(total)
	for _, a := range ready {
		if n -= a.Weight; n < 0 {
			return a
		}
	}
	return ready[len(ready)-1]
}

// note adds a line to the history of the current step.
func (r *Runner) note(msg string) {
	line := fmt.Sprintf("step %d [%6.2fs] %s: %s", r.step, time.Since(r.start).Seconds(), r.action, msg)
	r.history = append(r.history, line)
	if len(r.history) > 20000 {
		r.history = r.history[10000:]
	}
	if r.Cfg.Verbose {
		r.T.Log(line)
	}
}

// MaxCommit returns the longest small commit so far.
func (r *Runner) MaxCommit() time.Duration { return r.maxCommit }

// Note adds a line to the history of the current step.
func (r *Runner) Note(format string, args ...any) { r.note(fmt.Sprintf(format, args...)) }

// fail reports a failed invariant with everything needed to reproduce it.
func (r *Runner) fail(err error) {
	r.T.Helper()
	inv := "harness"
	var v *Violation
	if errors.As(err, &v) {
		inv = v.Invariant
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "MODEL FAILURE: invariant %q at step %d (%s, %.1fs into the run), seed %d\n  %v\n",
		inv, r.step, r.action, time.Since(r.start).Seconds(), r.Cfg.Seed, err)
	fmt.Fprintf(&sb, "reproduce: go test -race %s -model.seed=%d", r.Repro, r.Cfg.Seed)
	if r.Cfg.Actions != "" {
		fmt.Fprintf(&sb, " -model.actions=%s", r.Cfg.Actions)
	}
	if r.Cfg.Writers != "" {
		fmt.Fprintf(&sb, " -model.writers=%s", r.Cfg.Writers)
	}
	if r.Cfg.Lag != DefaultLag {
		fmt.Fprintf(&sb, " -model.lag=%v", r.Cfg.Lag)
	}
	if r.Cfg.Steps > 0 {
		fmt.Fprintf(&sb, " -model.steps=%d", r.Cfg.Steps)
	}
	fmt.Fprintf(&sb, "\nmodel: %v; last restore %v\n%s\n", r.model.Current(), r.last, r.summary())
	if full := r.saveHistory(); full != "" {
		fmt.Fprintf(&sb, "full history: %s\n", full)
	}
	sb.WriteString("history (last 60 lines):\n")
	h := r.history
	if len(h) > 60 {
		h = h[len(h)-60:]
	}
	for _, l := range h {
		sb.WriteString("  " + l + "\n")
	}
	if r.Logs != nil {
		sb.WriteString("replicator log (tail):\n" + r.Logs())
	}
	r.T.Fatal(sb.String())
}

// summary returns the counts of the run.
func (r *Runner) summary() string {
	keys := make([]string, 0, len(r.counts))
	for k := range r.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.counts[k]))
	}
	return fmt.Sprintf("seed %d, %d steps in %.1fs, %d commits, %d restores, max lag %v, max small commit %v, max WAL frames %d (largest txn %d frames), resources %v (start %v)\n  outcomes: %s",
		r.Cfg.Seed, r.step, time.Since(r.start).Seconds(), r.model.Commits(), r.restores, r.maxLag.Round(time.Millisecond),
		r.maxCommit.Round(time.Millisecond), r.wal.maxFrames, r.wal.maxTxnFrames, r.resMax, r.resBase, strings.Join(parts, " "))
}

// ReplicationDown records that replication stopped: no lag is enforced
// until [Runner.ReplicationUp].
func (r *Runner) ReplicationDown() { r.repDown = true; r.updateDown() }

// ReplicationUp records that replication (re)started now: commits
// acknowledged before are due one lag bound from now.
func (r *Runner) ReplicationUp() { r.repDown = false; r.updateDown() }

// writersChanged asks Replicating about the open writers (and extra, a
// one-shot writer's kind while it runs).
func (r *Runner) writersChanged(extra ...string) {
	if r.Replicating == nil {
		return
	}
	kinds := append([]string(nil), extra...)
	for _, s := range r.slots {
		kinds = append(kinds, s.kind)
	}
	r.kindsDown = !r.Replicating(kinds)
	r.updateDown()
}

func (r *Runner) updateDown() {
	down := r.repDown || r.kindsDown
	if r.down && !down {
		r.upAt = time.Now()
	}
	r.down = down
}

// ResetResources forgets the resource baseline (the replicator process
// was replaced).
func (r *Runner) ResetResources() { r.resBase = nil }

// deadline returns when a restore must hold o.
func (r *Runner) deadline(o obligation) time.Time {
	at := o.at
	if r.upAt.After(at) {
		at = r.upAt
	}
	return at.Add(r.SyncInterval + r.Cfg.Lag + time.Duration(o.bytes/(4<<20))*time.Second)
}

// grace is how long the WAL may stay over its bound, or checkpoints stay
// incomplete, and the longest an idle step waits: three sync intervals
// and the default allowance (a long -model.lag leaves only lag failures
// out).
func (r *Runner) grace() time.Duration {
	return 3*r.SyncInterval + min(r.Cfg.Lag, DefaultLag)
}

// Check restores the live target and checks it, the WAL and the
// replicator's resources. With wait it stays idle until every commit is
// restorable or the lag bound of the oldest one has passed, and at least
// two sync intervals.
func (r *Runner) Check(wait bool) error {
	began := time.Now()
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		at := time.Now()
		st, found, err := r.restore()
		if err != nil {
			return err
		}
		if err := r.enforce(st, found, at); err != nil {
			return err
		}
		waited := time.Since(began)
		if !wait || (len(r.pending) == 0 || r.down) && waited >= 2*r.SyncInterval ||
			waited > r.grace() {
			break // a long -model.lag leaves lag failures out: idle no longer
		}
		time.Sleep(delay) // polling another process's progress against a deadline
	}
	if err := r.checkWAL(); err != nil {
		return err
	}
	return r.checkResources()
}

// restore restores the target into a new file and checks that it is an
// exact committed prefix, no older than the previous restore.
func (r *Runner) restore() (State, bool, error) {
	r.restoreN++
	out := filepath.Join(r.Scratch, fmt.Sprintf("restore-%d.db", r.restoreN))
	defer func() {
		for _, suf := range []string{"", "-wal", "-shm", "-journal"} {
			os.Remove(out + suf)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	found, err := r.Restore(ctx, out)
	if err != nil {
		return State{}, false, Violationf("restore", "restore of the live target failed: %v", err)
	}
	if !found {
		return State{}, false, nil
	}
	r.restores++
	c, err := r.tool(out)
	if err != nil {
		return State{}, false, Violationf("restore", "open restored database: %v", err)
	}
	q := func(sql string) ([][]string, error) { return c.Exec(sql) }
	if rows, err := q("SELECT count(*) FROM sqlite_schema"); err == nil && fmt.Sprint(rows) == "[[0]]" {
		// The database before the schema's transaction: the empty prefix.
		c.Close()
		if r.restores > 1 {
			return State{}, false, Violationf("prefix", "restore went back from %v to the empty database", r.last)
		}
		r.restores--
		return State{}, false, nil
	}
	got, err := Observe(q, true)
	c.Close()
	if err != nil {
		return State{}, false, Violationf("prefix", "restored database: %v", err)
	}
	if _, err := r.model.Match(got); err != nil {
		return State{}, false, Violationf("prefix", "restored database: %v", err)
	}
	if got.Epoch < r.last.Epoch || got.Epoch == r.last.Epoch && got.LastSeq < r.last.LastSeq {
		return State{}, false, Violationf("prefix", "restore went back from %v to %v", r.last, got)
	}
	r.last = got
	return got, true, nil
}

// tool opens a database that is not the application's.
func (r *Runner) tool(path string) (Writer, error) {
	if r.Inspect != nil {
		return r.Inspect(path)
	}
	return OpenConn(path, "")
}

// enforce drops the obligations a restore taken at time at satisfies and
// fails on one whose deadline passed before at.
func (r *Runner) enforce(st State, found bool, at time.Time) error {
	for len(r.pending) > 0 {
		o := r.pending[0]
		if found && (st.Epoch > o.epoch || st.Epoch == o.epoch && st.LastSeq >= o.seq) {
			if lag := at.Sub(o.at); lag > r.maxLag && !o.at.Before(r.upAt) {
				r.maxLag = lag
			}
			r.pending = r.pending[1:]
			continue
		}
		if !r.down && at.After(r.deadline(o)) {
			got := "nothing"
			if found {
				got = st.String()
			}
			return Violationf("lag", "commit seq %d (epoch %d) acknowledged %v ago is not restorable: the live target restores %s; bound %v (sync interval %v + allowance %v); %s",
				o.seq, o.epoch, at.Sub(o.at).Round(time.Millisecond), got, r.deadline(o).Sub(o.at).Round(time.Millisecond), r.SyncInterval, r.Cfg.Lag, r.lateOrStuck(o))
		}
		break
	}
	return nil
}

// Obligate records that t committed just now: a restore must hold it
// within the lag bound. For commits a path's action makes itself.
func (r *Runner) Obligate(t *Txn) { r.obligate(t, time.Now()) }

// lateOrStuck tells, after a lag failure, whether the commit becomes
// restorable later with nothing else written (late) or not (stuck).
func (r *Runner) lateOrStuck(o obligation) string {
	extra := 2 * r.Cfg.Lag
	until := time.Now().Add(extra)
	for time.Now().Before(until) {
		st, found, err := r.restore()
		if err != nil {
			return fmt.Sprintf("then restore failed: %v", err)
		}
		if found && (st.Epoch > o.epoch || st.Epoch == o.epoch && st.LastSeq >= o.seq) {
			return fmt.Sprintf("late: restorable %v after its commit, with nothing written meanwhile", time.Since(o.at).Round(time.Millisecond))
		}
		time.Sleep(200 * time.Millisecond) // polling another process's progress against a deadline
	}
	return fmt.Sprintf("stuck: still not restorable %v later with nothing written meanwhile", extra)
}

// obligate records a commit acknowledged at time at.
func (r *Runner) obligate(t *Txn, at time.Time) {
	r.pending = append(r.pending, obligation{at: at, seq: t.LastSeq, epoch: r.model.Current().Epoch, bytes: t.Bytes()})
}

// anyReader reports whether a writer holds a read transaction.
func (r *Runner) anyReader() bool {
	return slices.ContainsFunc(r.slots, func(s *slot) bool { return s.reader })
}

// checkWAL checks that the WAL stays bounded while no reader holds it: the
// WAL-index's frame count may exceed the bound for a few steps (a restart
// waits for a sync and the next writer), not for long.
func (r *Runner) checkWAL() error {
	wi, ok := ReadWALIndex(r.DB)
	if !ok {
		return nil
	}
	r.wal.maxFrames = max(r.wal.maxFrames, wi.MxFrame)
	limit := uint32(0)
	switch {
	case r.CheckpointFrames > 0:
		limit = 4 * uint32(r.CheckpointFrames)
	default:
		for _, s := range r.slots {
			if s.autockpt <= 0 {
				limit = 0
				break
			}
			limit = max(limit, uint32(s.autockpt))
		}
	}
	bound := limit + 2*r.wal.maxTxnFrames + 64
	if r.anyReader() || limit == 0 || wi.MxFrame <= bound {
		r.wal.overSince, r.wal.overSteps = time.Time{}, 0
		return nil
	}
	if r.wal.overSince.IsZero() {
		r.wal.overSince = time.Now()
	}
	r.wal.overSteps++
	if over := time.Since(r.wal.overSince); r.wal.overSteps >= 10 && over > r.grace() {
		return Violationf("wal-bound", "the WAL holds %d frames (%d backfilled) with no reader open, over the bound %d (restart limit %d + 2 x largest transaction %d + 64) for %d steps and %v: checkpoints make no progress",
			wi.MxFrame, wi.NBackfill, bound, limit, r.wal.maxTxnFrames, r.wal.overSteps, over.Round(time.Millisecond))
	}
	return nil
}

// checkResources checks that the replicator's descriptors and threads or
// goroutines do not grow over the run.
func (r *Runner) checkResources() error {
	if r.Resources == nil || r.ResourcesWhenClosed && len(r.slots) > 0 {
		return nil
	}
	cur, err := r.Resources()
	if err != nil || cur == nil {
		return nil // the process is gone (killed): nothing to measure
	}
	if r.resBase == nil {
		r.resBase, r.resMax = cur, Resources{}
		return nil
	}
	for k, v := range cur {
		r.resMax[k] = max(r.resMax[k], v)
		if base, ok := r.resBase[k]; ok && v > base+r.Slack[k] {
			return Violationf("resources", "%s grew from %d to %d (slack %d): %v", k, base, v, r.Slack[k], cur)
		}
	}
	return nil
}
