package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// A minimal HTTP/1.x responder for the monitoring endpoints: GET and HEAD
// of a path, one request per connection, the answer built whole before it
// is written. net/http's server was measured at 1.3 MiB more RSS than this
// under a scrape a second (docs/decisions.md), code pages mostly, against
// a goal of 12 MB for the whole process.

// endpoint answers a GET of one path: a status code, a content type and
// the body.
type endpoint func(ctx context.Context) (code int, ctype string, body []byte)

// httpd serves endpoints on a listener until close.
type httpd struct {
	ln        net.Listener
	endpoints map[string]endpoint
	sem       chan struct{} // bounds the connections served at once
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// httpdMaxConns bounds the connections served at once; more wait in the
// listen backlog.
const httpdMaxConns = 8

// httpdTimeout bounds the whole exchange on one connection.
const httpdTimeout = 15 * time.Second

func newHTTPD(ln net.Listener, endpoints map[string]endpoint) *httpd {
	ctx, cancel := context.WithCancel(context.Background())
	return &httpd{ln: ln, endpoints: endpoints, sem: make(chan struct{}, httpdMaxConns), ctx: ctx, cancel: cancel}
}

// serve accepts connections until the listener is closed. Other accept
// errors (out of descriptors: walsync holds two per database) are waited
// out with a backoff, as net/http does.
func (h *httpd) serve() {
	var delay time.Duration
	for {
		h.sem <- struct{}{}
		c, err := h.ln.Accept()
		if err != nil {
			<-h.sem
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		h.wg.Go(func() {
			defer func() { <-h.sem }()
			h.serveConn(c)
		})
	}
}

// close stops accepting, waits up to timeout for the exchanges in
// progress, then cancels them.
func (h *httpd) close(timeout time.Duration) {
	h.ln.Close()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		h.cancel()
		<-done
	}
	h.cancel()
}

// maxRequestHeader bounds the request line and headers together.
const maxRequestHeader = 8 << 10

func (h *httpd) serveConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(httpdTimeout))
	br := bufio.NewReaderSize(&limitedConn{c: c, n: maxRequestHeader}, 1024)
	line, err := readLine(br)
	if err != nil {
		return
	}
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		respond(c, http.StatusBadRequest, "text/plain; charset=utf-8", []byte("bad request\n"), true)
		return
	}
	for { // the headers are not used
		l, err := readLine(br)
		if err != nil {
			return
		}
		if len(l) == 0 {
			break
		}
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	ep, found := h.endpoints[string(target)]
	head := string(method) == http.MethodHead
	switch {
	case string(method) != http.MethodGet && !head:
		respond(c, http.StatusMethodNotAllowed, "text/plain; charset=utf-8", []byte("method not allowed\n"), false)
	case !found:
		respond(c, http.StatusNotFound, "text/plain; charset=utf-8", []byte("not found\n"), head)
	default:
		ctx, cancel := context.WithTimeout(h.ctx, requestTimeout)
		code, ctype, body := ep(ctx)
		cancel()
		respond(c, code, ctype, body, head)
	}
}

// readLine reads one CRLF- or LF-terminated line without its terminator.
func readLine(br *bufio.Reader) ([]byte, error) {
	l, err := br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

// respond writes a whole answer and asks the client to close.
func respond(c net.Conn, code int, ctype string, body []byte, head bool) {
	b := make([]byte, 0, 160)
	b = fmt.Appendf(b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n",
		code, http.StatusText(code), ctype, strconv.Itoa(len(body)))
	if head {
		body = nil
	}
	bufs := net.Buffers{b, body}
	bufs.WriteTo(c)
}

// limitedConn reads at most n bytes from c.
type limitedConn struct {
	c net.Conn
	n int
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request header too large")
	}
	p = p[:min(len(p), l.n)]
	n, err := l.c.Read(p)
	l.n -= n
	return n, err
}
