// Package faultproxy is an HTTP reverse proxy for tests that injects the
// faults of an unreliable object store between a client and a real server
// (the versitygw that internal/testenv starts): error answers, connection
// resets before or after the server acted, stalls, truncated and corrupted
// bodies, latency, and a whole outage.
//
// Usage:
//
//	endpoint, bucket := testenv.S3(t)
//	p := faultproxy.New(t, endpoint)
//	c, _ := s3.New(ctx, s3.Config{Bucket: bucket, Endpoint: p.URL()})
//	p.Add(faultproxy.Rule{Method: "PUT", Fault: faultproxy.ResetAfter, Times: 1})
//	... // the first PUT is stored, and its connection reset
//	p.SetDown(true) // every connection is reset until SetDown(false)
//	p.Clear()       // no more faults
//
// The proxy keeps the Host header the client sent, so SigV4 signatures made
// for the proxy's address hold at the server. Faults are chosen per request
// by the first rule that matches and fires; with a seed ([Proxy.SetSeed]),
// the choice is deterministic for requests made one at a time. Stalls last
// their duration, or until the client goes away or the test ends.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what the proxy does to a request that a [Rule] selects.
type Fault int

// The faults.
const (
	// None forwards the request; only the rule's Latency applies.
	None Fault = iota

	// Status answers Rule.Status (default 503 SlowDown) without forwarding,
	// with an S3 XML error body.
	Status

	// ResetBefore resets the connection (TCP RST) before forwarding: the
	// server never sees the request.
	ResetBefore

	// ResetAfter forwards the request, waits for the server's whole answer
	// (an object is stored), then resets the connection instead of
	// answering.
	ResetAfter

	// StallRequest stops reading the request body for Rule.Stall once
	// Rule.At bytes of it have been forwarded.
	StallRequest

	// StallResponse stops sending the response body for Rule.Stall once
	// Rule.At bytes of it have been sent (headers included, flushed).
	StallResponse

	// Truncate sends the first Rule.At bytes of the response body, then
	// closes the connection.
	Truncate

	// Corrupt flips the bits of the response body's byte at offset Rule.At.
	Corrupt
)

var faultNames = [...]string{"None", "Status", "ResetBefore", "ResetAfter", "StallRequest", "StallResponse", "Truncate", "Corrupt"}

func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Rule selects requests and the fault done to them. The zero filters match
// every request; a rule with only Fault set fires on every request.
type Rule struct {
	Method string // HTTP method, or "" for any
	Key    string // substring of the URL path (bucket and key), or ""
	Query  string // substring of the raw query (e.g. "uploadId"), or ""

	After int     // let this many matching requests through first
	Times int     // fire at most this many times; 0: no limit
	Rate  float64 // fire for this fraction of matching requests; 0: all

	Fault   Fault
	Status  int           // for Status; 0 means 503
	At      int64         // body offset for StallRequest, StallResponse, Truncate, Corrupt
	Stall   time.Duration // for StallRequest, StallResponse
	Latency time.Duration // added before the request is handled

	// OnFire, if set, runs when the rule fires, before its fault: a test
	// can act at the moment a given request arrives (its own requests to
	// the server do not go through the proxy). The request waits for it,
	// and its client sees no byte meanwhile.
	OnFire func()
}

// rule is a Rule with its counters, guarded by Proxy.mu.
type rule struct {
	Rule
	seen, fired int
}

// Proxy is a fault-injecting reverse proxy on 127.0.0.1. Its methods are
// safe for concurrent use.
type Proxy struct {
	url  string
	srv  *http.Server
	rp   *httputil.ReverseProxy
	tr   *http.Transport
	done chan struct{} // closed when the test ends: stalls stop

	mu       sync.Mutex
	rules    []*rule        // +checklocks:mu
	down     bool           // +checklocks:mu
	rng      *rand.Rand     // +checklocks:mu
	counts   map[string]int // +checklocks:mu
	injected int            // +checklocks:mu
}

// New starts a proxy to upstream (such as "http://127.0.0.1:7070") that
// stops when t ends. It fails t if it cannot listen.
func New(t testing.TB, upstream string) *Proxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		t.Fatalf("faultproxy: upstream %q: not a URL", upstream)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	p := &Proxy{
		url:    "http://" + ln.Addr().String(),
		tr:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		done:   make(chan struct{}),
		rng:    rand.New(rand.NewPCG(1, 1)),
		counts: make(map[string]int),
	}
	p.rp = httputil.NewSingleHostReverseProxy(u) // keeps the Host header
	p.rp.Transport = p.tr
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ErrorLog: log.New(io.Discard, "", 0)}
	go p.srv.Serve(&listener{Listener: ln, p: p})
	t.Cleanup(func() {
		close(p.done)
		p.srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// URL returns the proxy's endpoint, "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return p.url }

// SetSeed makes the choices of rules with a Rate deterministic: the same
// seed and the same requests, one at a time, fire the same faults. The
// default seed is 1.
func (p *Proxy) SetSeed(seed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rng = rand.New(rand.NewPCG(seed, seed))
}

// SetDown takes the server down (true): new connections are reset as soon
// as they are accepted, and requests on open ones are answered by a reset,
// until SetDown(false).
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// Add appends a rule; rules are tried in the order they were added.
func (p *Proxy) Add(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &rule{Rule: r})
}

// Clear removes every rule and brings the server back up.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules, p.down = nil, false
}

// Count returns the number of requests the proxy received with method, or
// all of them for "", faulted or not (connections reset while down carry no
// request and are not counted).
func (p *Proxy) Count(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if method == "" {
		n := 0
		for _, c := range p.counts {
			n += c
		}
		return n
	}
	return p.counts[method]
}

// Injected returns the number of faults done so far (None included, when
// it added latency), down resets excluded.
func (p *Proxy) Injected() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.injected
}

// choose counts r and returns the rule that fires for it, or nil, and
// whether the server is down.
func (p *Proxy) choose(r *http.Request) (*Rule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[r.Method]++
	if p.down {
		return nil, true
	}
	for _, ru := range p.rules {
		if (ru.Method != "" && ru.Method != r.Method) || !strings.Contains(r.URL.Path, ru.Key) ||
			!strings.Contains(r.URL.RawQuery, ru.Query) {
			continue
		}
		ru.seen++
		if ru.seen <= ru.After || (ru.Times > 0 && ru.fired >= ru.Times) {
			continue
		}
		if ru.Rate > 0 && p.rng.Float64() >= ru.Rate {
			continue
		}
		ru.fired++
		p.injected++
		rc := ru.Rule
		return &rc, false
	}
	return nil, false
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	ru, down := p.choose(r)
	if down {
		reset(w)
		return
	}
	if ru == nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	if ru.OnFire != nil {
		ru.OnFire()
	}
	if ru.Latency > 0 && !p.wait(r.Context(), ru.Latency) {
		return
	}
	switch ru.Fault {
	case None:
		p.rp.ServeHTTP(w, r)
	case Status:
		writeStatus(w, ru.Status)
	case ResetBefore:
		reset(w)
	case ResetAfter:
		p.rp.ServeHTTP(&discardWriter{h: make(http.Header)}, r)
		reset(w)
	case StallRequest:
		r.Body = &stallReader{r: r.Body, at: ru.At, stall: func() { p.wait(r.Context(), ru.Stall) }}
		p.rp.ServeHTTP(w, r)
	case StallResponse, Truncate, Corrupt:
		p.rp.ServeHTTP(&bodyWriter{ResponseWriter: w, p: p, ctx: r.Context(), rule: ru}, r)
	default:
		panic(fmt.Sprintf("faultproxy: unknown fault %v", ru.Fault))
	}
}

// wait waits for d, until ctx is done or the test ends, and reports
// whether d passed.
func (p *Proxy) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-p.done:
	}
	return false
}

// writeStatus answers an S3 error of status (0: 503).
func writeStatus(w http.ResponseWriter, status int) {
	code, msg := "", "injected by faultproxy"
	switch status {
	case 0, http.StatusServiceUnavailable:
		status, code, msg = http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."
	case http.StatusInternalServerError:
		code = "InternalError"
	default:
		code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Connection", "close") // the request body may be unread
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
}

// reset ends the request's connection with a TCP RST, without answering.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // closes the connection
	}
	resetConn(conn)
}

func resetConn(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// listener resets the connections it accepts while the proxy is down.
type listener struct {
	net.Listener
	p *Proxy
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.p.mu.Lock()
		down := l.p.down
		l.p.mu.Unlock()
		if !down {
			return c, nil
		}
		resetConn(c)
	}
}

// discardWriter is a ResponseWriter that drops the response.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// stallReader calls stall once, when at bytes of r have been read.
type stallReader struct {
	r       io.ReadCloser
	at, off int64
	stall   func()
	stalled bool
}

func (s *stallReader) Read(b []byte) (int, error) {
	if !s.stalled && s.off >= s.at {
		s.stalled = true
		s.stall()
	}
	if !s.stalled && int64(len(b)) > s.at-s.off {
		b = b[:s.at-s.off]
	}
	n, err := s.r.Read(b)
	s.off += int64(n)
	return n, err
}

func (s *stallReader) Close() error { return s.r.Close() }

// errGone ends a stalled response whose client went away.
var errGone = errors.New("faultproxy: client gone during a stall")

// bodyWriter does a rule's fault to the response body that goes through it.
type bodyWriter struct {
	http.ResponseWriter
	p    *Proxy
	ctx  context.Context
	rule *Rule
	off  int64 // body bytes written
	done bool  // the fault was done
}

func (b *bodyWriter) Write(data []byte) (int, error) {
	ru := b.rule
	end := b.off + int64(len(data))
	if b.done || end < ru.At || (ru.Fault == Corrupt && end == ru.At) {
		b.off = end
		return b.ResponseWriter.Write(data)
	}
	b.done = true
	head := ru.At - b.off
	n, err := b.ResponseWriter.Write(data[:head])
	b.off += int64(n)
	if err != nil {
		return n, err
	}
	rest := data[head:]
	switch ru.Fault {
	case Truncate:
		http.NewResponseController(b.ResponseWriter).Flush()
		panic(http.ErrAbortHandler) // closes the connection
	case StallResponse:
		http.NewResponseController(b.ResponseWriter).Flush()
		if !b.p.wait(b.ctx, ru.Stall) {
			return n, errGone
		}
	case Corrupt:
		rest = append([]byte{rest[0] ^ 0xff}, rest[1:]...)
	}
	m, err := b.ResponseWriter.Write(rest)
	b.off += int64(m)
	return n + m, err
}

// Flush lets the reverse proxy flush through the fault.
func (b *bodyWriter) Flush() { http.NewResponseController(b.ResponseWriter).Flush() }
