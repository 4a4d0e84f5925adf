package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff between attempts: the first wait is about minBackoff, doubling
// up to maxBackoff, each with random jitter.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// emptySHA256 is the hex SHA-256 of an empty body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// userAgent is sent with every request, unsigned.
const userAgent = "walsync"

// request is one S3 API call, which [Client.do] sends, signed, until it
// succeeds or fails for good.
type request struct {
	method string
	key    string // full object key (with the prefix); "" addresses the bucket
	query  string // encoded query string, or ""
	header http.Header

	// body holds size bytes from its start (nil: no body), and payload is
	// their hex SHA-256, or emptySHA256.
	body    io.ReadSeeker
	size    int64
	payload string

	// buffer reads a 2xx answer's body whole (up to maxListBody) before
	// do returns, so that a failure mid-body is retried. Requests on the
	// bucket (key "") always do: their answers are bounded XML documents.
	buffer bool

	// settled, if set, runs before a retry that follows a network error
	// (the attempt may have taken effect, its answer lost): an error ends
	// the request with it (errSettled: it took effect after all).
	settled func(ctx context.Context) error
}

// errSettled ends a request whose earlier attempt is found to have taken
// effect.
var errSettled = errors.New("earlier attempt took effect")

// url returns the URL of key, or of the bucket when key is "".
func (c *Client) url(key, query string) *url.URL {
	u := &url.URL{Scheme: c.scheme, Host: c.host, Path: c.path, RawPath: c.rawPath, RawQuery: query}
	if key != "" || !c.pathStyle {
		u.Path += "/" + key
		u.RawPath += "/" + escapePath(key)
	}
	return u
}

// escapePath URI-encodes an object key the way S3 and SigV4 want it: every
// byte but the unreserved characters (letters, digits, '-', '.', '_', '~')
// and '/' is written %XX.
func escapePath(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && s[i] != '/' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; unreserved(c) || c == '/' {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// do sends r, retrying network errors, 5xx and throttling with exponential
// backoff up to c.attempts times in all, and signing every attempt anew. It
// returns the response to the first attempt answered with a 2xx status; any
// other status is an *apiError. Network failures are *sendError.
func (c *Client) do(ctx context.Context, r *request) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		resp, err := c.send(ctx, r, attempt)
		if err == nil && resp.StatusCode/100 == 2 {
			if !r.buffer && r.key != "" {
				return resp, nil
			}
			if err = bufferBody(resp); err == nil {
				return resp, nil
			}
		} else if err == nil {
			err = readError(resp)
		}
		if attempt >= c.attempts || !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return nil, err
		}
		var se *sendError
		if r.settled != nil && errors.As(err, &se) {
			if serr := r.settled(ctx); serr != nil {
				return nil, serr
			}
		}
	}
}

// send makes attempt number attempt at r.
func (c *Client) send(ctx context.Context, r *request, attempt int) (*http.Response, error) {
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return nil, &credentialsError{err}
	}
	header := r.header
	switch {
	case header == nil:
		header = make(http.Header, 4)
	case attempt > 1:
		// The transport may still be writing the last attempt's headers.
		header = header.Clone()
	}
	req := (&http.Request{
		Method:     r.method,
		URL:        c.url(r.key, r.query),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     header,
		Host:       c.host,
	}).WithContext(ctx)
	req.Header["User-Agent"] = []string{userAgent}
	req.Header["X-Amz-Content-Sha256"] = []string{r.payload}
	var b *body
	switch {
	case r.body != nil && r.size > 0:
		if _, err := r.body.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("rewind content: %w", err)
		}
		b = &body{r: r.body, n: r.size}
		req.Body, req.ContentLength = b, r.size
	case r.method == http.MethodPut || r.method == http.MethodPost:
		req.Body = http.NoBody
	}
	if err := c.signer.SignHTTP(ctx, creds, req, r.payload, "s3", c.region, time.Now()); err != nil {
		return nil, err
	}
	// The attempt fails when no byte moves for c.idle: the watchdog
	// cancels it, unless the body or the response kicks it in time.
	actx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{idle: c.idle, cancel: cancel}
	w.t = time.AfterFunc(c.idle, w.fire)
	req = req.WithContext(actx)
	if b != nil {
		b.kick = w.kick
	}
	resp, err := c.http.Do(req)
	if b != nil {
		// The transport may still be reading the body after an early
		// answer; the next attempt rewinds the reader.
		b.Close()
	}
	if err != nil {
		w.stop()
		if idle := w.stalled(); idle != nil && ctx.Err() == nil {
			err = idle
		}
		return nil, &sendError{err}
	}
	w.kick()
	resp.Body = &respBody{rc: resp.Body, w: w}
	return resp, nil
}

// idleError fails an attempt at a request during which no byte moved for
// too long.
type idleError struct{ d time.Duration }

func (e *idleError) Error() string { return fmt.Sprintf("no byte moved for %v", e.d) }

// Timeout reports true: an idleError is a timeout, as net.Error has it.
func (e *idleError) Timeout() bool { return true }

// watchdog cancels an attempt at a request when it is not kicked for idle.
type watchdog struct {
	t      *time.Timer
	idle   time.Duration
	cancel context.CancelCauseFunc
	fired  atomic.Bool
}

func (w *watchdog) fire() {
	w.fired.Store(true)
	w.cancel(&idleError{w.idle})
}

// kick restarts the idle period: a byte moved.
func (w *watchdog) kick() { w.t.Reset(w.idle) }

// stop ends the attempt's context, whose response is done with.
func (w *watchdog) stop() {
	w.t.Stop()
	w.cancel(nil)
}

// stalled returns the error of an attempt that the watchdog ended, or nil.
func (w *watchdog) stalled() error {
	if !w.fired.Load() {
		return nil
	}
	return &idleError{w.idle}
}

// respBody is a response body that kicks the watchdog of its attempt as
// bytes arrive, and stops it when closed.
type respBody struct {
	rc io.ReadCloser
	w  *watchdog
}

func (b *respBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.kick()
	}
	if err != nil && err != io.EOF {
		if idle := b.w.stalled(); idle != nil {
			err = idle
		}
	}
	return n, err
}

func (b *respBody) Close() error {
	err := b.rc.Close()
	b.w.stop()
	return err
}

// bufferBody replaces the body of resp by its content, read whole; a
// failure to read it is a *sendError.
func bufferBody(resp *http.Response) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
	resp.Body.Close()
	if err != nil {
		return &sendError{fmt.Errorf("read response: %w", err)}
	}
	if len(b) > maxListBody {
		return fmt.Errorf("response body over %d bytes", maxListBody)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

// retryable reports whether a request that failed with err may succeed if
// sent again.
func retryable(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.retryable()
	}
	var se *sendError
	if !errors.As(err, &se) {
		return false // credentials, or an unreadable body
	}
	// A certificate will not be any better next time.
	var (
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
	)
	return !errors.As(err, &verify) && !errors.As(err, &unknownCA) && !errors.As(err, &hostname)
}

// backoff returns the wait before attempt+1: minBackoff doubled for each
// attempt up to maxBackoff, of which a random half.
func backoff(attempt int) time.Duration {
	d := maxBackoff
	if attempt < 16 {
		d = min(maxBackoff, minBackoff<<(attempt-1))
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errBodyClosed is what the transport reads from the body of an attempt
// that is over.
var errBodyClosed = errors.New("request body closed")

// body is the request body of one attempt: the next n bytes of r. Once
// closed it no longer reads r, so that the next attempt can rewind r while
// the transport may still hold this attempt's body.
type body struct {
	mu     sync.Mutex
	r      io.Reader
	n      int64 // bytes left
	closed bool
	kick   func() // called as bytes are read, or nil
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if n > 0 && b.kick != nil {
		b.kick()
	}
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// discard reads the rest of a response body, so that its connection can be
// reused, and closes it.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// trimPrefix returns the key of an object relative to the client's prefix.
func (c *Client) trimPrefix(key string) string { return strings.TrimPrefix(key, c.prefix) }
