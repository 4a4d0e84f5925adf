package bench

import (
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// setLatency makes the proxy wait d before forwarding each request from
// now on, as a remote S3 endpoint's round trip would; 0 forwards at once.
// The requests are counted before the wait.
func (p *countingProxy) setLatency(d time.Duration) { p.latency.Store(int64(d)) }

// byteSnapshot returns the response body bytes sent so far, by request
// type.
func (p *countingProxy) byteSnapshot() map[string]int64 {
	out := make(map[string]int64, len(p.bytes))
	for t, c := range p.bytes {
		out[t] = c.Load()
	}
	return out
}

// countingBody counts the bytes read from a response body.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// activity follows the requests whose path starts with a prefix
// ("bucket/prefix/"), to tell when a tool has stored its first LTX file and
// when it has gone quiet.
type activity struct {
	prefix   string
	inflight atomic.Int64 // requests being served
	last     atomic.Int64 // Unix nanoseconds of the last request's end
	ltx      atomic.Int64 // .ltx objects stored
}

// watch starts following the requests under prefix.
func (p *countingProxy) watch(prefix string) *activity {
	a := &activity{prefix: prefix}
	a.last.Store(time.Now().UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watches = append(p.watches, a)
	return a
}

// unwatch stops following a.
func (p *countingProxy) unwatch(a *activity) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, w := range p.watches {
		if w == a {
			p.watches = append(p.watches[:i], p.watches[i+1:]...)
			return
		}
	}
}

// begin notes the start of a request on path ("/bucket/key") and returns
// the function that notes its end.
func (p *countingProxy) begin(path string) func() {
	path = strings.TrimPrefix(path, "/")
	p.mu.Lock()
	var as []*activity
	for _, a := range p.watches {
		if strings.HasPrefix(path, a.prefix) {
			as = append(as, a)
		}
	}
	p.mu.Unlock()
	for _, a := range as {
		a.inflight.Add(1)
	}
	return func() {
		now := time.Now().UnixNano()
		for _, a := range as {
			a.last.Store(now)
			a.inflight.Add(-1)
		}
	}
}

// noteWatched counts an object stored at path in the activities that
// follow it. p.mu is held.
func (p *countingProxy) noteWatched(path string) {
	if !strings.HasSuffix(path, ".ltx") {
		return
	}
	for _, a := range p.watches {
		if strings.HasPrefix(path, a.prefix) {
			a.ltx.Add(1)
		}
	}
}

// quiet reports whether a has stored an LTX file and has served no request
// for d before now.
func (a *activity) quiet(now time.Time, d time.Duration) bool {
	return a.ltx.Load() > 0 && a.inflight.Load() == 0 && now.Sub(time.Unix(0, a.last.Load())) >= d
}
