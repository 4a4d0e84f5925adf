package modeltest

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The application: long-lived writers in slots, one-shot writers, and
// the transactions they commit.

// maxSlots is the most long-lived writers open at once.
const maxSlots = 3

// busyTimeout is the application's busy timeout (ms).
const busyTimeout = 5000

// openSlot opens a long-lived writer of a random kind with random
// connection settings.
func (r *Runner) openSlot() (*slot, error) {
	kind := r.LongKinds[r.rng.IntN(len(r.LongKinds))]
	w, err := r.openWriter(kind)
	if err != nil {
		return nil, err
	}
	r.slotSeq++
	s := &slot{id: r.slotSeq, kind: kind, w: w}
	s.autockpt, s.cache, err = r.configure(w)
	if err != nil {
		w.Close()
		return nil, Violationf("writer-error", "%v: configure: %v", s, err)
	}
	r.slots = append(r.slots, s)
	r.writersChanged()
	r.note(fmt.Sprintf("open %v (wal_autocheckpoint=%d cache_size=%d)", s, s.autockpt, s.cache))
	return s, nil
}

func (r *Runner) openWriter(kind string) (Writer, error) {
	w, err := r.Open(kind, r.DB)
	if err != nil {
		return nil, Violationf("writer-error", "open %s writer: %v", kind, err)
	}
	return w, nil
}

// configure sets a writer's busy timeout, synchronous mode, page cache
// and auto-checkpoint, and returns the last two.
func (r *Runner) configure(w Writer) (autockpt, cache int, err error) {
	autockpt = []int{1000, 1000, 100, 0}[r.rng.IntN(4)]
	cache = []int{-2000, -2000, 20}[r.rng.IntN(3)] // 20 pages: transactions spill
	sync := []string{"NORMAL", "FULL"}[r.rng.IntN(2)]
	_, err = w.Exec(fmt.Sprintf("PRAGMA busy_timeout=%d", busyTimeout), "PRAGMA synchronous="+sync,
		fmt.Sprintf("PRAGMA cache_size=%d", cache), fmt.Sprintf("PRAGMA wal_autocheckpoint=%d", autockpt))
	return autockpt, cache, err
}

// idleSlot returns a long-lived writer without a read transaction,
// opening one if there is room; nil if every slot holds a reader.
func (r *Runner) idleSlot() (*slot, error) {
	var idle []*slot
	for _, s := range r.slots {
		if !s.reader {
			idle = append(idle, s)
		}
	}
	if len(idle) == 0 || len(r.slots) < maxSlots && r.rng.IntN(6) == 0 {
		if len(r.slots) >= maxSlots {
			return nil, nil
		}
		return r.openSlot()
	}
	return idle[r.rng.IntN(len(idle))], nil
}

// drop closes a slot's writer and forgets it.
func (r *Runner) drop(s *slot) error {
	for i, x := range r.slots {
		if x == s {
			r.slots = append(r.slots[:i], r.slots[i+1:]...)
			break
		}
	}
	err := s.w.Close()
	r.writersChanged()
	if err != nil {
		return Violationf("writer-error", "%v: close: %v", s, err)
	}
	return nil
}

// dropDead forgets a slot whose process exited (a shell after an error).
func (r *Runner) dropDead(s *slot) {
	if !s.w.Alive() {
		r.drop(s)
		r.note(fmt.Sprintf("%v exited", s))
	}
}

// closeAll closes every writer, ignoring errors (cleanup).
func (r *Runner) closeAll() {
	for _, s := range r.slots {
		s.w.Close()
	}
	r.slots = nil
}

// CloseApp closes every writer: the application stops.
func (r *Runner) CloseApp() error {
	var errs []error
	for len(r.slots) > 0 {
		errs = append(errs, r.drop(r.slots[0]))
	}
	r.note("application stopped (all writers closed)")
	return errors.Join(errs...)
}

// ReopenApp opens one to three long-lived writers.
func (r *Runner) ReopenApp() error {
	for range 1 + r.rng.IntN(maxSlots) {
		if _, err := r.openSlot(); err != nil {
			return err
		}
	}
	return nil
}

// withWriter runs fn on an idle long-lived writer or, sometimes (or when
// every slot holds a reader), on a one-shot writer that opens the
// database, runs fn and exits.
func (r *Runner) withWriter(fn func(w Writer, name string) error) error {
	if len(r.OnceKinds) > 0 && r.rng.IntN(4) == 0 {
		return r.once(fn)
	}
	s, err := r.idleSlot()
	if err != nil {
		return err
	}
	if s == nil {
		return r.once(fn)
	}
	err = fn(s.w, s.String())
	r.dropDead(s)
	return err
}

// once runs fn on a one-shot writer.
func (r *Runner) once(fn func(w Writer, name string) error) error {
	kind := r.OnceKinds[r.rng.IntN(len(r.OnceKinds))]
	w, err := r.openWriter(kind)
	if err != nil {
		return err
	}
	if _, _, err := r.configure(w); err != nil {
		w.Close()
		return Violationf("writer-error", "one-shot %s: configure: %v", kind, err)
	}
	r.writersChanged(kind)
	err = fn(w, kind+"(once)")
	cerr := w.Close()
	r.writersChanged()
	if cerr != nil && err == nil {
		err = Violationf("writer-error", "one-shot %s: %v", kind, cerr)
	}
	return err
}

// Exec runs statements on some writer of the application.
func (r *Runner) Exec(stmts ...string) ([][]string, error) {
	var rows [][]string
	err := r.withWriter(func(w Writer, _ string) error {
		var err error
		rows, err = w.Exec(stmts...)
		return err
	})
	return rows, err
}

// Commit commits one transaction of the given size on some writer.
func (r *Runner) Commit(size Size) (string, error) {
	var outcome string
	err := r.withWriter(func(w Writer, name string) error {
		t := r.model.Plan(r.rng, size, r.MaxTxnBytes, 0)
		var err error
		outcome, err = r.commit(w, name, t, false)
		return err
	})
	return outcome, err
}

// commit runs t on w as one transaction (inTxn: w already holds a read
// transaction, so BEGIN is not sent) and records it in the model. A busy
// error is legal only in a transaction begun earlier; anywhere else the
// application was blocked for its whole busy timeout.
func (r *Runner) commit(w Writer, name string, t *Txn, inTxn bool) (string, error) {
	stmts := t.Stmts()
	if !inTxn {
		stmts = append([]string{"BEGIN"}, stmts...)
	}
	stmts = append(stmts, "COMMIT")
	before, _ := ReadWALIndex(r.DB)
	began := time.Now()
	_, err := w.Exec(stmts...)
	took := time.Since(began)
	r.note(fmt.Sprintf("%s: %v in %v", name, t, took.Round(time.Millisecond)))
	if err == nil {
		return "ok", r.committed(t, before, took)
	}
	legal := inTxn && (IsBusy(err) || IsBusySnapshot(err))
	if w.Alive() {
		w.Exec("ROLLBACK") // "no transaction is active" if the error ended it
	}
	committed, rerr := r.resolve(w, t)
	if rerr != nil {
		return "", rerr
	}
	if committed { // the error came after the commit (a shell that exited)
		return "ok-after-error", r.committed(t, before, 0)
	}
	switch {
	case legal && IsBusySnapshot(err):
		return "busy-snapshot", nil
	case legal:
		return "busy", nil
	case IsBusy(err):
		return "", Violationf("commit-blocked", "%s: %v: %v after %v (busy timeout %d ms: the application was blocked)", name, t, err, took.Round(time.Millisecond), busyTimeout)
	}
	return "", Violationf("writer-error", "%s: %v: %v", name, t, err)
}

// committed records a commit in the model and checks its latency.
func (r *Runner) committed(t *Txn, before WALIndex, took time.Duration) error {
	now := time.Now()
	r.model.Committed(t, now)
	r.obligate(t, now)
	r.noteFrames(before)
	if t.Bytes() < 256<<10 {
		r.maxCommit = max(r.maxCommit, took)
		if took > r.Cfg.CommitBound {
			return Violationf("commit-latency", "%v took %v, over the bound %v for a small commit", t, took.Round(time.Millisecond), r.Cfg.CommitBound)
		}
	}
	return nil
}

// noteFrames records how many frames the write since before added.
func (r *Runner) noteFrames(before WALIndex) {
	after, ok := ReadWALIndex(r.DB)
	if !ok {
		return
	}
	n := after.MxFrame
	if after.Salt1 == before.Salt1 && after.MxFrame >= before.MxFrame {
		n -= before.MxFrame
	}
	r.wal.maxTxnFrames = max(r.wal.maxTxnFrames, n)
}

// resolve finds out whether t committed after its writer reported an
// error, by reading the database.
func (r *Runner) resolve(w Writer, t *Txn) (bool, error) {
	read := func(w Writer) ([][]string, error) { return w.Exec("SELECT coalesce(max(seq), 0) FROM log") }
	var rows [][]string
	var err error
	if w.Alive() {
		rows, err = read(w)
	} else {
		err = r.once(func(w Writer, _ string) error { rows, err = read(w); return err })
	}
	if err != nil {
		return false, Violationf("writer-error", "read back after a failed commit: %v", err)
	}
	switch got := fmt.Sprint(rows); got {
	case fmt.Sprintf("[[%d]]", t.LastSeq):
		return true, nil
	case fmt.Sprintf("[[%d]]", t.FirstSeq-1):
		return false, nil
	default:
		return false, Violationf("app-read", "after a failed %v the database's last seq is %s", t, got)
	}
}

// VerifyLive reads the database as the application (on w, or on a
// one-shot writer if w is nil): it must equal the model's current state
// exactly and pass integrity_check.
func (r *Runner) VerifyLive(w Writer) error {
	check := func(w Writer, name string) error {
		got, err := Observe(func(sql string) ([][]string, error) { return w.Exec(sql) }, true)
		if err != nil {
			return Violationf("app-read", "%s reads the live database: %v", name, err)
		}
		want := r.model.Current()
		got.At = want.At
		if got != want {
			return Violationf("app-read", "%s reads %v, want %v (the application does not read what it committed):\n got  %s\n want %s", name, got, want, got.Fields(), want.Fields())
		}
		r.note(fmt.Sprintf("%s reads %v, integrity ok", name, got))
		return nil
	}
	if w != nil {
		return check(w, "writer")
	}
	return r.once(check)
}

// checkpointResult finds the (busy, log, checkpointed) row of a
// wal_checkpoint among rows.
func checkpointResult(rows [][]string) (string, bool) {
	for _, row := range rows {
		if len(row) == 3 {
			return strings.Join(row, "|"), row[0] == "1"
		}
	}
	return "", false
}
