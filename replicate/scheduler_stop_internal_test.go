package replicate

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestSchedulerStopMidDispatch: a database the scheduler has taken as due
// but not handed to a worker when it stops is put back: not running, its
// flush completed with errStopped, and scheduled again by the next notify.
//
// Deterministic: with no worker, nothing ever receives the database, and
// with a context cancelled before run starts, run takes the due database
// first and then finds the context done while dispatching it.
func TestSchedulerStopMidDispatch(t *testing.T) {
	s := newScheduler(0, 0, slog.New(slog.DiscardHandler))
	d := &DB{}
	f := &flush{} // as scheduler.flush registers one
	s.mu.Lock()
	f.wg.Add(1)
	d.sched.flushes = append(d.sched.flushes, f)
	s.enqueue(d, time.Now())
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s.run(ctx)

	if s.busy(d) {
		t.Fatalf("database still running or waiting after the scheduler stopped: %+v", d.sched)
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // a failure timeout, not synchronisation
		t.Fatal("the flush of a database taken but never dispatched never completed")
	}
	if got, want := len(f.errs), 1; got != want {
		t.Fatalf("flush errors=%v, want %d", f.errs, want)
	}
	if !errors.Is(f.errs[0], errStopped) {
		t.Fatalf("flush err=%v, want errStopped", f.errs[0])
	}

	s.notify(d)
	s.mu.Lock()
	waiting := d.sched.waiting && len(s.waiting) == 1 && s.waiting[0] == d
	s.mu.Unlock()
	if !waiting {
		t.Fatalf("notify after the stop did not schedule the database: %+v", d.sched)
	}
}
