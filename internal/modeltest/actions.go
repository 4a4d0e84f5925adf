package modeltest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// sharedActions returns the actions of both capture paths. Names are the
// -model.actions names.
func sharedActions() []Action {
	hasReader := func(r *Runner) bool { return r.anyReader() }
	return []Action{
		{Name: "commit", Weight: 30, Do: func(r *Runner) (string, error) {
			return r.Commit([]Size{Small, Small, Small, Medium}[r.rng.IntN(4)])
		}},
		{Name: "big", Weight: 4, Do: doBig},
		{Name: "reader", Weight: 5, Ready: func(r *Runner) bool { return len(r.LongKinds) > 0 }, Do: doReader},
		{Name: "readerwrite", Weight: 4, Ready: hasReader, Do: doReaderWrite},
		{Name: "readerend", Weight: 2, Ready: hasReader, Do: doReaderEnd},
		{Name: "checkpoint", Weight: 6, Do: doCheckpoint},
		{Name: "handover", Weight: 2, Ready: func(r *Runner) bool { return len(r.LongKinds) > 0 }, Do: doHandover},
		{Name: "autockpt", Weight: 3, Ready: func(r *Runner) bool { return len(r.slots) > 0 }, Do: doAutockpt},
		{Name: "rollback", Weight: 3, Do: doRollback},
		{Name: "slowcommit", Weight: 2, Do: doSlowCommit},
		{Name: "vacuum", Weight: 2, Do: doVacuum},
		{Name: "journalmode", Weight: 3, Do: doJournalMode},
		{Name: "idle", Weight: 4, Do: func(r *Runner) (string, error) { return "ok", r.Check(true) }},
		{Name: "live", Weight: 2, Do: func(r *Runner) (string, error) { return "ok", r.VerifyLive(nil) }},
		{Name: "appclose", Weight: 2, Do: doAppClose},
		{Name: "replace", Weight: 1, Do: func(r *Runner) (string, error) { return doReplace(r, false) }},
		{Name: "recreate", Weight: 1, Do: func(r *Runner) (string, error) { return doReplace(r, true) }},
	}
}

// doBig commits a transaction of hundreds of KiB to several MiB with a
// page cache of 20 pages, so that it spills into the WAL before COMMIT.
func doBig(r *Runner) (string, error) {
	var outcome string
	err := r.withWriter(func(w Writer, name string) error {
		if _, err := w.Exec("PRAGMA cache_size=20"); err != nil {
			return Violationf("writer-error", "%s: %v", name, err)
		}
		t := r.model.Plan(r.rng, []Size{Large, Large, Huge}[r.rng.IntN(3)], r.MaxTxnBytes, 0)
		var err error
		outcome, err = r.commit(w, name, t, false)
		return err
	})
	return outcome, err
}

// doReader begins a read transaction on a long-lived writer and leaves it
// open across the following steps.
func doReader(r *Runner) (string, error) {
	s, err := r.idleSlot()
	if err != nil || s == nil {
		return "no-slot", err
	}
	rows, err := s.w.Exec("BEGIN", "SELECT count(*) FROM log")
	if err != nil {
		r.dropDead(s)
		return "", Violationf("writer-error", "%v: begin read: %v", s, err)
	}
	s.reader, s.readSeq = true, r.model.Current().LastSeq
	r.note(fmt.Sprintf("%v holds a read transaction at seq %d (sees %v rows)", s, s.readSeq, rows))
	return "ok", nil
}

// readerSlot returns a random slot holding a read transaction.
func (r *Runner) readerSlot() *slot {
	var rs []*slot
	for _, s := range r.slots {
		if s.reader {
			rs = append(rs, s)
		}
	}
	return rs[r.rng.IntN(len(rs))]
}

// doReaderWrite writes in a read transaction begun earlier: BUSY_SNAPSHOT
// (another writer committed since) and BUSY are legal and roll back.
func doReaderWrite(r *Runner) (string, error) {
	s := r.readerSlot()
	s.reader = false
	t := r.model.Plan(r.rng, []Size{Small, Medium}[r.rng.IntN(2)], r.MaxTxnBytes, 0)
	outcome, err := r.commit(s.w, s.String(), t, true)
	r.dropDead(s)
	return outcome, err
}

// doReaderEnd ends a read transaction without writing.
func doReaderEnd(r *Runner) (string, error) {
	s := r.readerSlot()
	s.reader = false
	if _, err := s.w.Exec("COMMIT"); err != nil {
		r.dropDead(s)
		return "", Violationf("writer-error", "%v: end read: %v", s, err)
	}
	return "ok", nil
}

// doCheckpoint runs wal_checkpoint in a random mode. Where walsync's pin
// is documented to make RESTART and TRUNCATE return busy, the busy
// timeout is shortened for the call. Without the pin and with no reader
// open, every mode must complete: the application would see that without
// walsync.
func doCheckpoint(r *Runner) (string, error) {
	mode := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}[r.rng.IntN(4)]
	readers := r.anyReader()
	var outcome string
	err := r.withWriter(func(w Writer, name string) error {
		stmts := []string{"PRAGMA wal_checkpoint(" + mode + ")"}
		if r.Pinned || readers {
			stmts = append([]string{"PRAGMA busy_timeout=100"}, append(stmts, fmt.Sprintf("PRAGMA busy_timeout=%d", busyTimeout))...)
		}
		rows, err := w.Exec(stmts...)
		if err != nil {
			if IsBusy(err) && (r.Pinned || readers) {
				outcome = mode + "-busy-error"
				return nil
			}
			return Violationf("writer-error", "%s: wal_checkpoint(%s): %v", name, mode, err)
		}
		res, busy := checkpointResult(rows)
		r.note(fmt.Sprintf("%s: wal_checkpoint(%s) = %s", name, mode, res))
		if !readers {
			if err := r.checkpointProgress(res); err != nil {
				return err
			}
		}
		outcome = mode
		if busy {
			outcome += "-busy"
			if !r.Pinned && !readers && mode != "PASSIVE" {
				return Violationf("app-checkpoint", "%s: wal_checkpoint(%s) = %s with no reader open: without walsync it completes", name, mode, res)
			}
		}
		return nil
	})
	return outcome, err
}

// doHandover is the sequence around a WAL restart hand-over: a commit
// (the replicator syncs one interval later), then at once a reader begins
// at the WAL's end and the application checkpoints (everything is copied),
// the replicator gets two sync intervals to act, then the reader writes
// (BUSY_SNAPSHOT is legal) and the application commits on.
func doHandover(r *Runner) (string, error) {
	if _, err := r.Commit([]Size{Medium, Large}[r.rng.IntN(2)]); err != nil {
		return "", err
	}
	if out, err := doReader(r); err != nil || out != "ok" {
		return out, err
	}
	var s *slot
	for _, x := range r.slots {
		if x.reader {
			s = x
		}
	}
	mode := []string{"PASSIVE", "FULL", "TRUNCATE"}[r.rng.IntN(3)]
	err := r.once(func(w Writer, name string) error {
		rows, err := w.Exec("PRAGMA busy_timeout=100", "PRAGMA wal_checkpoint("+mode+")")
		if err != nil && !IsBusy(err) {
			return Violationf("writer-error", "%s: wal_checkpoint(%s): %v", name, mode, err)
		}
		res, _ := checkpointResult(rows)
		r.note(fmt.Sprintf("%s: wal_checkpoint(%s) = %s, %v", name, mode, res, err))
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := r.Check(true); err != nil {
		return "", err
	}
	s.reader = false
	t := r.model.Plan(r.rng, Small, r.MaxTxnBytes, 0)
	outcome, err := r.commit(s.w, s.String(), t, true)
	r.dropDead(s)
	if err != nil {
		return "", err
	}
	for range 2 + r.rng.IntN(4) {
		if _, err := r.Commit([]Size{Small, Medium}[r.rng.IntN(2)]); err != nil {
			return "", err
		}
	}
	return outcome, nil
}

// checkpointProgress follows the checkpoints the application runs with
// no reader open: one that cannot copy every frame is legal for a moment
// (walsync holds READ_LOCK(0) while it snapshots or hands a restart
// over), not for long.
func (r *Runner) checkpointProgress(res string) error {
	f := strings.Split(res, "|")
	if len(f) != 3 || f[1] == f[2] || f[1] == "-1" {
		r.wal.stuckSince, r.wal.stuckN = time.Time{}, 0
		return nil
	}
	if r.wal.stuckSince.IsZero() {
		r.wal.stuckSince = time.Now()
	}
	r.wal.stuckN++
	if d := time.Since(r.wal.stuckSince); r.wal.stuckN >= 3 && d > r.grace() {
		return Violationf("checkpoint-progress", "with no reader open, %d checkpoints over %v copied only part of the WAL (last: busy|log|checkpointed = %s): something holds the WAL-index's READ_LOCK(0) or a read mark",
			r.wal.stuckN, d.Round(time.Millisecond), res)
	}
	return nil
}

// doAutockpt changes a writer's wal_autocheckpoint.
func doAutockpt(r *Runner) (string, error) {
	s := r.slots[r.rng.IntN(len(r.slots))]
	n := []int{0, 100, 1000}[r.rng.IntN(3)]
	if _, err := s.w.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint=%d", n)); err != nil {
		r.dropDead(s)
		return "", Violationf("writer-error", "%v: wal_autocheckpoint: %v", s, err)
	}
	s.autockpt = n
	r.note(fmt.Sprintf("%v: wal_autocheckpoint=%d", s, n))
	return fmt.Sprint(n), nil
}

// doRollback writes a transaction big enough to spill into the WAL, then
// rolls it back. Its rows take sequence numbers a later commit reuses with
// other bodies, so a restore holding them fails the prefix check.
func doRollback(r *Runner) (string, error) {
	return "ok", r.withWriter(func(w Writer, name string) error {
		t := r.model.Plan(r.rng, []Size{Medium, Large}[r.rng.IntN(2)], r.MaxTxnBytes, 7)
		stmts := append([]string{"PRAGMA cache_size=20", "BEGIN"}, t.Stmts()...)
		if _, err := w.Exec(append(stmts, "ROLLBACK")...); err != nil {
			return Violationf("writer-error", "%s: rolled-back %v: %v", name, t, err)
		}
		r.note(fmt.Sprintf("%s: %v rolled back", name, t))
		return nil
	})
}

// doSlowCommit writes a spilling transaction, keeps it open for one to
// three sync intervals while the target is restored (the uncommitted
// frames must not appear), then commits it.
func doSlowCommit(r *Runner) (string, error) {
	var outcome string
	err := r.withWriter(func(w Writer, name string) error {
		t := r.model.Plan(r.rng, []Size{Medium, Large}[r.rng.IntN(2)], r.MaxTxnBytes, 0)
		before, _ := ReadWALIndex(r.DB)
		stmts := append([]string{"PRAGMA cache_size=20", "BEGIN"}, t.Stmts()...)
		if _, err := w.Exec(stmts...); err != nil {
			if w.Alive() {
				w.Exec("ROLLBACK")
			}
			return Violationf("writer-error", "%s: %v: %v", name, t, err)
		}
		r.note(fmt.Sprintf("%s: %v written, not committed", name, t))
		until := time.Now().Add(time.Duration(1+r.rng.IntN(3)) * r.SyncInterval)
		for time.Now().Before(until) {
			if err := r.Check(false); err != nil {
				w.Exec("ROLLBACK")
				return err
			}
		}
		began := time.Now()
		if _, err := w.Exec("COMMIT"); err != nil {
			return Violationf("writer-error", "%s: COMMIT %v: %v", name, t, err)
		}
		outcome = "ok"
		return r.committed(t, before, time.Since(began))
	})
	return outcome, err
}

// doVacuum rewrites the database.
func doVacuum(r *Runner) (string, error) {
	outcome := "ok"
	return outcome, r.withWriter(func(w Writer, name string) error {
		before, _ := ReadWALIndex(r.DB)
		if _, err := w.Exec("VACUUM"); err != nil {
			if IsBusy(err) && r.anyReader() {
				outcome = "busy"
				return nil
			}
			return Violationf("writer-error", "%s: VACUUM: %v", name, err)
		}
		r.noteFrames(before)
		return nil
	})
}

// doJournalMode leaves WAL mode for a rollback journal mode, commits in
// it, and returns to WAL. Where walsync's pin is documented to make
// leaving WAL mode return busy, that is counted. Without the pin, when the
// writer is alone (the others closed first), it must succeed.
func doJournalMode(r *Runner) (string, error) {
	mode := []string{"DELETE", "TRUNCATE", "PERSIST", "MEMORY"}[r.rng.IntN(4)]
	alone := !r.Pinned && r.rng.IntN(2) == 0
	if alone {
		if err := r.CloseApp(); err != nil {
			return "", err
		}
	}
	s, err := r.idleSlot()
	if err != nil || s == nil {
		return "no-slot", err
	}
	alone = alone && len(r.slots) == 1
	rows, err := s.w.Exec("PRAGMA busy_timeout=100", "PRAGMA journal_mode="+mode)
	got := ""
	if len(rows) > 0 {
		got = strings.Join(rows[len(rows)-1], "|")
	}
	if err != nil || got != strings.ToLower(mode) {
		r.dropDead(s)
		if s.w.Alive() {
			s.w.Exec(fmt.Sprintf("PRAGMA busy_timeout=%d", busyTimeout))
		}
		if err != nil && !IsBusy(err) {
			return "", Violationf("writer-error", "%v: journal_mode=%s: %v", s, mode, err)
		}
		if alone {
			return "", Violationf("journal-mode", "%v alone on the database cannot leave WAL mode (journal_mode=%s: %q, %v)", s, mode, got, err)
		}
		r.note(fmt.Sprintf("%v: journal_mode=%s refused (%q, %v)", s, mode, got, err))
		return "busy", nil
	}
	s.w.Exec(fmt.Sprintf("PRAGMA busy_timeout=%d", busyTimeout))
	r.note(fmt.Sprintf("%v: journal_mode=%s", s, mode))
	t := r.model.Plan(r.rng, []Size{Small, Medium}[r.rng.IntN(2)], r.MaxTxnBytes, 0)
	outcome, cerr := r.commit(s.w, s.String()+"("+mode+")", t, false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := s.w.Exec("PRAGMA journal_mode=WAL")
		if err == nil && fmt.Sprint(rows) == "[[wal]]" {
			break
		}
		if time.Now().After(deadline) || err != nil && !IsBusy(err) {
			return "", Violationf("journal-mode", "%v cannot return to WAL mode from %s: %v, %v", s, mode, rows, err)
		}
		time.Sleep(50 * time.Millisecond) // the application retrying
	}
	r.note(fmt.Sprintf("%v: back to WAL", s))
	if cerr != nil {
		return "", cerr
	}
	return mode + "-" + outcome, nil
}

// doAppClose stops the application (every writer closes), sometimes
// stays stopped for a while, and starts it again.
func doAppClose(r *Runner) (string, error) {
	if err := r.CloseApp(); err != nil {
		return "", err
	}
	if err := r.Check(false); err != nil {
		return "", err
	}
	outcome := "ok"
	if r.rng.IntN(2) == 0 {
		outcome = "idle"
		if err := r.Check(true); err != nil {
			return "", err
		}
	}
	if err := r.ReopenApp(); err != nil {
		return "", err
	}
	return outcome, r.VerifyLive(r.slots[0].w)
}

// doReplace stops the application and puts another database at its path:
// a copy of its content (VACUUM INTO, so pages move) whose epoch is one
// higher. replace renames the copy over the file; recreate deletes the
// database and its -wal and -shm first and creates the copy a little
// later. The application, started again, must read the copy exactly.
func doReplace(r *Runner, recreate bool) (string, error) {
	if err := r.CloseApp(); err != nil {
		return "", err
	}
	other := filepath.Join(r.Scratch, "other.db")
	for _, suf := range []string{"", "-wal", "-shm"} {
		os.Remove(other + suf)
	}
	err := r.once(func(w Writer, name string) error {
		_, err := w.Exec(fmt.Sprintf("VACUUM INTO '%s'", other))
		return err
	})
	if err != nil {
		return "", Violationf("writer-error", "VACUUM INTO: %v", err)
	}
	// A copy in another page size: no page of the old file or WAL fits it.
	epoch := r.model.Current().Epoch + 1
	pageSize := []int{1024, 2048, 8192, 16384}[r.rng.IntN(4)]
	c, err := r.tool(other)
	if err != nil {
		return "", err
	}
	_, err = c.Exec("PRAGMA journal_mode=DELETE", fmt.Sprintf("PRAGMA page_size=%d", pageSize), "VACUUM",
		"PRAGMA journal_mode=WAL", fmt.Sprintf("UPDATE meta SET v = %d WHERE k = 'epoch'", epoch))
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("prepare %s: %w", other, err)
	}
	if _, err := os.Stat(other + "-wal"); err == nil {
		return "", fmt.Errorf("%s-wal left after its last connection closed", other)
	}
	// The application stopped: the database must be left as SQLite leaves
	// it (no frame in the WAL, so that the file alone is the database)
	// within a bound, before anyone replaces it.
	if err := r.waitWALEmpty(); err != nil {
		return "", err
	}
	if recreate {
		for _, suf := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(r.DB + suf); err != nil && !os.IsNotExist(err) {
				return "", err
			}
		}
		r.note("database, -wal and -shm deleted; a while without a database")
		if err := r.Check(true); err != nil {
			return "", err
		}
	}
	if err := os.Rename(other, r.DB); err != nil {
		return "", err
	}
	r.model.NewEpoch(time.Now())
	r.note(fmt.Sprintf("database replaced by a copy with epoch %d and %d-byte pages", epoch, pageSize))
	if err := r.ReopenApp(); err != nil {
		return "", err
	}
	return "ok", r.VerifyLive(r.slots[0].w)
}

// waitWALEmpty waits until the stopped application's WAL is gone or empty,
// as SQLite's last close leaves it, for at most the grace of a checkpoint:
// past it, walsync has kept frames in the WAL of a stopped application.
func (r *Runner) waitWALEmpty() error {
	deadline := time.Now().Add(r.grace())
	for {
		fi, err := os.Stat(r.DB + "-wal")
		if err != nil || fi.Size() == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return Violationf("app-stop", "the application stopped %v ago and its WAL still holds %d bytes: replacing the file now would put them over the new one", r.grace(), fi.Size())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
