package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request types counted by the proxy, as S3 sees them.
const (
	ReqPut    = "PUT"
	ReqGet    = "GET"
	ReqHead   = "HEAD"
	ReqList   = "LIST"
	ReqDelete = "DELETE"
	ReqPost   = "POST"
	ReqOther  = "OTHER"
)

var reqTypes = []string{ReqPut, ReqGet, ReqHead, ReqList, ReqDelete, ReqPost, ReqOther}

// countingProxy is a reverse proxy in front of an S3 endpoint that counts
// requests by type and records when each object was stored. It keeps the
// incoming Host header, which SigV4 signs, so the server still verifies the
// clients' signatures.
type countingProxy struct {
	url    string // http://127.0.0.1:port
	srv    *http.Server
	done   chan struct{}
	counts map[string]*atomic.Int64
	bytes  map[string]*atomic.Int64 // response body bytes, by request type

	// latency is added before each request is forwarded, in nanoseconds
	// (setLatency); wait sleeps it (replaced in tests).
	latency atomic.Int64
	wait    func(ctx context.Context, d time.Duration) error

	mu sync.Mutex
	// watches are the prefixes whose activity is followed (watch).
	watches []*activity
	// stored holds, by path without the leading slash ("bucket/key"), when
	// the server's first successful response to a request creating the
	// object arrived.
	stored map[string]time.Time
}

// startProxy listens on 127.0.0.1 and forwards every request to endpoint.
func startProxy(endpoint string) (*countingProxy, error) {
	up, err := url.Parse(endpoint)
	if err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return nil, fmt.Errorf("proxy: endpoint %q: want http(s)://host[:port]", endpoint)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &countingProxy{url: "http://" + ln.Addr().String(), done: make(chan struct{}),
		counts: map[string]*atomic.Int64{}, bytes: map[string]*atomic.Int64{}, stored: map[string]time.Time{}, wait: sleep}
	for _, t := range reqTypes {
		p.counts[t] = new(atomic.Int64)
		p.bytes[t] = new(atomic.Int64)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // straight to the endpoint, whatever HTTP_PROXY says
	tr.MaxIdleConnsPerHost = 64
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			r.Out.Host = r.In.Host // SigV4 signs Host: keep the one the client signed
		},
		Transport: tr,
		ModifyResponse: func(resp *http.Response) error {
			resp.Body = &countingBody{ReadCloser: resp.Body, n: p.bytes[classify(resp.Request)]}
			return nil
		},
		// A client that gives up (a tool stopped mid-request) is not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.counts[classify(r)].Add(1)
			defer p.begin(r.URL.Path)()
			if d := time.Duration(p.latency.Load()); d > 0 {
				if err := p.wait(r.Context(), d); err != nil {
					return // the client gave up
				}
			}
			if !createsObject(r) {
				rp.ServeHTTP(w, r)
				return
			}
			rp.ServeHTTP(&storeWriter{ResponseWriter: w, p: p, path: strings.TrimPrefix(r.URL.Path, "/")}, r)
		}),
		ReadHeaderTimeout: time.Minute,
	}
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return p, nil
}

// snapshot returns the requests counted so far, by type.
func (p *countingProxy) snapshot() map[string]int64 {
	out := make(map[string]int64, len(p.counts))
	for t, c := range p.counts {
		out[t] = c.Load()
	}
	return out
}

// noteStored records that the object at path was stored at t, unless it
// was stored earlier.
func (p *countingProxy) noteStored(path string, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.stored[path]; !ok || t.Before(old) {
		p.stored[path] = t
	}
	p.noteWatched(path)
}

// takeStored returns when each object whose path starts with prefix was
// stored, by the rest of its path, and forgets them.
func (p *countingProxy) takeStored(prefix string) map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]time.Time)
	for path, t := range p.stored {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			out[rest] = t
			delete(p.stored, path)
		}
	}
	return out
}

// createsObject reports whether an S3 request stores a whole object once it
// succeeds: a PUT that is not the part of a multipart upload, or the POST
// completing one.
func createsObject(r *http.Request) bool {
	q := r.URL.Query()
	switch r.Method {
	case http.MethodPut:
		return !q.Has("uploadId")
	case http.MethodPost:
		return q.Has("uploadId")
	}
	return false
}

// storeWriter is the response writer of a request creating an object: it
// records the object as stored when a successful response header is
// written, which the reverse proxy does as soon as the server's response
// arrives, before the client sees it.
type storeWriter struct {
	http.ResponseWriter
	p     *countingProxy
	path  string
	wrote bool
}

func (w *storeWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 { // not an informational 1xx
		w.wrote = true
		if code < 300 {
			w.p.noteStored(w.path, time.Now())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *storeWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *storeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Close stops the proxy.
func (p *countingProxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	<-p.done
	return err
}

// classify returns the request type of an S3 request in path style
// (/bucket/key): a GET on a bucket, or with list-type or prefix, lists.
func classify(r *http.Request) string {
	switch r.Method {
	case http.MethodPut:
		return ReqPut
	case http.MethodHead:
		return ReqHead
	case http.MethodDelete:
		return ReqDelete
	case http.MethodPost:
		return ReqPost
	case http.MethodGet:
		q := r.URL.Query()
		key := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)
		if q.Has("list-type") || q.Has("prefix") || len(key) < 2 || key[1] == "" {
			return ReqList
		}
		return ReqGet
	}
	return ReqOther
}

// proxyCounter counts requests through a shared proxy.
type proxyCounter struct{ p *countingProxy }

func (c proxyCounter) unit() string { return "requests" }

func (c proxyCounter) snapshot(context.Context) (map[string]int64, error) { return c.p.snapshot(), nil }

// counter reports, by type, how many requests (or objects) a tool has
// caused so far; the bench takes the difference over the window.
type counter interface {
	unit() string // "requests" or "objects"
	snapshot(ctx context.Context) (map[string]int64, error)
}
