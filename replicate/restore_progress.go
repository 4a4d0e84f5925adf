package replicate

import (
	"sync/atomic"
	"time"
)

// progressInterval is the shortest time between two progress calls.
const progressInterval = 100 * time.Millisecond

// progressReporter calls RestoreOptions.Progress from its own goroutine,
// every progressInterval, with the fetcher's counters.
type progressReporter struct {
	fn         func(RestoreProgress)
	filesTotal int
	bytesTotal int64
	files      *atomic.Int64
	bytes      *atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

// startProgress starts the reporter, or returns nil if fn is nil.
func startProgress(fn func(RestoreProgress), filesTotal int, bytesTotal int64, files, bytes *atomic.Int64) *progressReporter {
	if fn == nil {
		return nil
	}
	p := &progressReporter{fn: fn, filesTotal: filesTotal, bytesTotal: bytesTotal, files: files, bytes: bytes,
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *progressReporter) run() {
	defer close(p.done)
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.fn(p.now(false))
		}
	}
}

func (p *progressReporter) now(done bool) RestoreProgress {
	return RestoreProgress{
		Files: int(p.files.Load()), FilesTotal: p.filesTotal,
		Bytes: p.bytes.Load(), BytesTotal: p.bytesTotal, Done: done,
	}
}

// finish stops the reporter and waits for it; if ok, it makes the last
// call, with Done set. It may be called on a nil reporter, and more than
// once (the first call counts).
func (p *progressReporter) finish(ok bool) {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.done
	if ok {
		p.fn(p.now(true))
	}
}
