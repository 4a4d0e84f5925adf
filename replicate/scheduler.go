package replicate

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// scheduler is the shared uploader: it runs the sync of each changed
// database on a fixed pool of workers, at most once per sync interval per
// database, never two syncs of one database at a time (so segment n+1 is
// never uploaded before segment n is durable), and nothing for idle
// databases. It owns one timer, armed only while a database waits.
type scheduler struct {
	interval time.Duration
	workers  int
	log      *slog.Logger

	mu      sync.Mutex
	waiting []*DB // notified, not yet due or not yet handed to a worker
	active  bool

	kick chan struct{}
	work chan *DB

	syncing atomic.Int64 // syncs running (the compactor gives way to them)
}

// schedState is the scheduling state of one database (guarded by
// scheduler.mu): a few words, no allocation while idle.
type schedState struct {
	waiting bool      // in scheduler.waiting
	running bool      // a worker is syncing it
	rerun   bool      // notified while running
	due     time.Time // earliest start of the next sync
	last    time.Time // start of the last sync
	fails   int       // consecutive failures
	retry   time.Time // after a failure: no sync before it, however notified
	flushes []*flush  // waiting for the next sync to finish
	inRun   []*flush  // waiting for the running sync to finish
}

// flush is one Sync call waiting for a set of databases.
type flush struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

// newScheduler returns a scheduler that syncs each database at most once per
// interval; a negative interval ([SyncImmediately]) is none.
func newScheduler(interval time.Duration, workers int, log *slog.Logger) *scheduler {
	return &scheduler{
		interval: max(interval, 0),
		workers:  workers,
		log:      log,
		kick:     make(chan struct{}, 1),
		work:     make(chan *DB),
	}
}

// notify marks d as changed; it is synced once its interval has passed
// (and, after a failed sync, its backoff).
func (s *scheduler) notify(d *DB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueue(d, s.notBefore(d, d.sched.last.Add(s.syncInterval(d))))
}

// notifyNow marks d as changed and due at once (after a failed sync, once
// its backoff has passed).
func (s *scheduler) notifyNow(d *DB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueue(d, s.notBefore(d, time.Now()))
}

// notBefore returns due, or the end of d's backoff if that is later: a
// failing database (an unreachable target, a snapshot that cannot be
// taken) is retried at its backoff, not at every commit. Caller holds s.mu.
func (s *scheduler) notBefore(d *DB, due time.Time) time.Time {
	if d.sched.retry.After(due) {
		return d.sched.retry
	}
	return due
}

// enqueue schedules d no earlier than due. Caller holds s.mu.
func (s *scheduler) enqueue(d *DB, due time.Time) {
	st := &d.sched
	if st.running {
		st.rerun = true
		if due.Before(st.due) || st.due.IsZero() {
			st.due = due
		}
		return
	}
	if st.waiting {
		if due.Before(st.due) {
			st.due = due
			s.wake()
		}
		return
	}
	st.waiting, st.due = true, due
	s.waiting = append(s.waiting, d)
	s.wake()
}

func (s *scheduler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// busy reports whether d is being synced or waiting to be.
func (s *scheduler) busy(d *DB) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return d.sched.running || d.sched.waiting
}

// running reports whether run is active.
func (s *scheduler) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// run dispatches due databases to the workers until ctx is done.
func (s *scheduler) run(ctx context.Context) {
	s.mu.Lock()
	s.active = true
	s.mu.Unlock()
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() { s.worker(ctx) })
	}
	defer func() {
		wg.Wait()
		s.mu.Lock()
		s.active = false
		for _, d := range s.waiting {
			for _, f := range d.sched.flushes {
				f.fail(errStopped)
			}
			d.sched.flushes, d.sched.waiting = nil, false
		}
		s.waiting = nil
		s.mu.Unlock()
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		due, next := s.takeDue(time.Now())
		for i, d := range due {
			select {
			case s.work <- d:
			case <-ctx.Done():
				s.putBack(due[i:])
				return
			}
		}
		if len(due) > 0 {
			continue
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// takeDue removes and returns the databases due at now (marking them
// running) and the time the next one is due.
func (s *scheduler) takeDue(now time.Time) (due []*DB, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.waiting[:0]
	for _, d := range s.waiting {
		st := &d.sched
		if !st.due.After(now) {
			st.waiting, st.running, st.last = false, true, now
			st.inRun, st.flushes = st.flushes, nil
			due = append(due, d)
			continue
		}
		if next.IsZero() || st.due.Before(next) {
			next = st.due
		}
		keep = append(keep, d)
	}
	clear(s.waiting[len(keep):])
	s.waiting = keep
	return due, next
}

// putBack returns databases that takeDue marked running but that were never
// handed to a worker, because the scheduler is stopping, to the waiting
// list: not running, the flushes of the sync they were taken for waiting
// again. The stop then completes those flushes with errStopped, as it does
// for every waiting database, and the next notify schedules them (their
// last sync start stays the time they were taken, so that is at most one
// interval late). Nothing is lost: Replicator.Run syncs every database once
// the scheduler has stopped.
func (s *scheduler) putBack(dbs []*DB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range dbs {
		st := &d.sched
		st.running, st.rerun, st.waiting = false, false, true
		st.flushes, st.inRun = append(st.inRun, st.flushes...), nil
		s.waiting = append(s.waiting, d)
	}
}

func (s *scheduler) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-s.work:
			s.syncing.Add(1)
			err := d.syncWith(ctx, s.flushing(d))
			s.syncing.Add(-1)
			s.done(d, err)
			if err == nil {
				d.r.afterSync(d)
			}
			d.r.enforcePinBudget()
		}
	}
}

// flushing reports whether a flush waits for the sync of d that runs now.
func (s *scheduler) flushing(d *DB) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(d.sched.inRun) > 0
}

// done records the end of a sync of d and reschedules it if needed.
func (s *scheduler) done(d *DB, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &d.sched
	for _, f := range st.inRun {
		f.fail(err)
	}
	st.inRun, st.running = nil, false
	var off *offlineError
	if errors.As(err, &off) {
		// Degraded mode: the database is synced at its usual pace (what
		// it captures is spooled), and once more when an upload is due.
		if st.fails > 0 {
			st.fails, st.retry = 0, time.Time{}
		}
		if st.rerun || len(st.flushes) > 0 {
			st.rerun = false
			s.enqueue(d, st.last.Add(s.syncInterval(d)))
		}
		s.enqueue(d, off.retry)
		return
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		d.r.stats.errors.Add(1)
		st.fails++
		backoff := min(time.Second<<min(st.fails-1, 5), 30*time.Second)
		if st.fails == 1 || st.fails%10 == 0 {
			d.logger().Warn("sync failed, will retry", "error", err, "retry_in", backoff, "failures", st.fails)
		}
		st.retry = time.Now().Add(backoff)
		s.enqueue(d, st.retry)
		return
	}
	if err == nil && st.fails > 0 {
		d.logger().Info("sync recovered", "after_failures", st.fails)
		st.fails, st.retry = 0, time.Time{}
	}
	if st.rerun || len(st.flushes) > 0 {
		st.rerun = false
		due := st.last.Add(s.syncInterval(d))
		if len(st.flushes) > 0 {
			due = time.Now()
		}
		s.enqueue(d, due)
	}
}

// forget drops d from the scheduler: it is no longer replicated, with
// everything captured uploaded, so flushes waiting for it complete.
func (s *scheduler) forget(d *DB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &d.sched
	if st.waiting {
		s.waiting = slices.DeleteFunc(s.waiting, func(w *DB) bool { return w == d })
		st.waiting = false
	}
	for _, f := range st.flushes {
		f.fail(nil)
	}
	st.flushes, st.rerun = nil, false
}

// errStopped completes flushes still waiting when the scheduler stops,
// including those of databases taken for dispatch but never handed to a
// worker (see putBack).
var errStopped = errors.New("replicator stopped")

// fail completes one database of the flush with err (nil: success).
func (f *flush) fail(err error) {
	if err != nil {
		f.mu.Lock()
		f.errs = append(f.errs, err)
		f.mu.Unlock()
	}
	f.wg.Done()
}

// flush syncs dbs now and waits until each has completed a sync that
// started after the call.
func (s *scheduler) flush(ctx context.Context, dbs []*DB) error {
	f := &flush{}
	s.mu.Lock()
	for _, d := range dbs {
		f.wg.Add(1)
		d.sched.flushes = append(d.sched.flushes, f)
		s.enqueue(d, time.Now())
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		f.mu.Lock()
		defer f.mu.Unlock()
		return errors.Join(f.errs...)
	case <-ctx.Done():
		return ctx.Err()
	}
}
