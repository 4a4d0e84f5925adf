package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

// These tests run against a fake S3 server that records what it receives;
// the ones in client_test.go run against a real one.

const (
	fakeKeyID  = "AKIDFAKE"
	fakeSecret = "fake-secret-do-not-show"
)

// received is a request as the fake server saw it.
type received struct {
	method, host, uri string
	header            http.Header
	body              []byte
}

// fake is an S3 server whose answers come from a function of the request
// number (1-based) and the request.
type fake struct {
	mu   sync.Mutex
	reqs []received
}

func (f *fake) requests() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.reqs...)
}

// newFake starts a fake server and returns a Client of bucket "bkt",
// prefix "p", for it. A nil dial reaches the server at its own address;
// else the client's connections go through dial.
func newFake(t *testing.T, cfg s3.Config, answer func(n int, r received, w http.ResponseWriter)) (*s3.Client, *fake) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	for _, env := range []string{"AWS_REGION", "AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_SESSION_TOKEN", s3.EnvEndpoint, s3.EnvEndpointS3} {
		t.Setenv(env, "")
	}
	f := &fake{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		rec := received{method: r.Method, host: r.Host, uri: r.RequestURI, header: r.Header, body: b}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		n := len(f.reqs)
		f.mu.Unlock()
		answer(n, rec, w)
	}))
	t.Cleanup(srv.Close)
	cfg.Bucket, cfg.Prefix = "bkt", "p"
	cfg.AccessKeyID, cfg.SecretAccessKey = fakeKeyID, fakeSecret
	if cfg.Endpoint == "" {
		cfg.Endpoint = srv.URL
	} else {
		addr := srv.Listener.Addr().String()
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}}
	}
	c, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

// s3Error writes an S3 error response.
func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message><RequestId>1</RequestId></Error>", code, msg)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	io.ReadSeeker
	n int
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadSeeker.Read(p)
	r.n += n
	return n, err
}

func TestClient_PutRequest(t *testing.T) {
	c, f := newFake(t, s3.Config{}, func(n int, r received, w http.ResponseWriter) {})
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	r := &countingReader{ReadSeeker: bytes.NewReader(data)}
	meta := map[string]string{replicate.MetaTimestamp: "2025-01-02T03:04:05Z", replicate.MetaSHA256: "ignored"}
	if err := c.Put(t.Context(), "db/odd key+~%.ltx", r, int64(len(data)), meta); err != nil {
		t.Fatal(err)
	}
	if got, want := r.n, 2*len(data); got != want {
		t.Fatalf("Put read %d bytes of content, want %d (once to hash, once to send)", got, want)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	sum := sha256.Sum256(data)
	for _, h := range []struct{ name, want string }{
		{"Content-Length", fmt.Sprint(len(data))},
		{"X-Amz-Content-Sha256", hex.EncodeToString(sum[:])},
		{"X-Amz-Checksum-Sha256", base64.StdEncoding.EncodeToString(sum[:])},
		{"X-Amz-Meta-Sha256", hex.EncodeToString(sum[:])},
		{"X-Amz-Meta-Litestream-Timestamp", "2025-01-02T03:04:05Z"},
		{"If-None-Match", "*"},
	} {
		if got := got.header.Get(h.name); got != h.want {
			t.Fatalf("%s: %q, want %q", h.name, got, h.want)
		}
	}
	if got, want := got.method+" "+got.uri, "PUT /bkt/p/db/odd%20key%2B~%25.ltx"; got != want {
		t.Fatalf("request %s, want %s", got, want)
	}
	auth := got.header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+fakeKeyID+"/") ||
		!strings.Contains(auth, "content-length;host;if-none-match;x-amz-checksum-sha256;x-amz-content-sha256;x-amz-date;x-amz-meta-litestream-timestamp;x-amz-meta-sha256") {
		t.Fatalf("Authorization %q does not sign the headers", auth)
	}
	if !bytes.Equal(got.body, data) {
		t.Fatalf("server got %d other bytes", len(got.body))
	}
}

func TestClient_Retry(t *testing.T) {
	c, f := newFake(t, s3.Config{MaxAttempts: 4}, func(n int, r received, w http.ResponseWriter) {
		switch n {
		case 1:
			s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		case 2:
			s3Error(w, http.StatusBadRequest, "RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period.")
		case 3:
			// Not S3 XML, as a load balancer would answer.
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>bad gateway</html>")
		}
	})
	data := []byte("retried content")
	if err := c.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("Put: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 4 {
		t.Fatalf("server got %d requests, want 4", len(reqs))
	}
	for i, r := range reqs {
		if !bytes.Equal(r.body, data) {
			t.Fatalf("attempt %d sent %q, want %q", i+1, r.body, data)
		}
		if r.header.Get("Authorization") == "" || r.header.Get("X-Amz-Date") == "" {
			t.Fatalf("attempt %d is not signed", i+1)
		}
	}
}

func TestClient_RetryGivesUp(t *testing.T) {
	c, f := newFake(t, s3.Config{MaxAttempts: 2}, func(n int, r received, w http.ResponseWriter) {
		s3Error(w, http.StatusInternalServerError, "InternalError", "We encountered an internal error.\nPlease try again.")
	})
	err := c.Put(t.Context(), "k", strings.NewReader("x"), 1, nil)
	checkOneLine(t, err, []string{"s3: put k: InternalError: We encountered an internal error. Please try again. (HTTP 500)"}, fakeSecret)
	if got, want := len(f.requests()), 2; got != want {
		t.Fatalf("server got %d requests, want %d", got, want)
	}
}

func TestClient_NoRetry4xx(t *testing.T) {
	c, f := newFake(t, s3.Config{}, func(n int, r received, w http.ResponseWriter) {
		s3Error(w, http.StatusBadRequest, "InvalidArgument", "bad")
	})
	_, err := c.Head(t.Context(), "k")
	checkOneLine(t, err, []string{"s3: head k: BadRequest (HTTP 400)"}, fakeSecret)
	err = c.Put(t.Context(), "k", strings.NewReader("x"), 1, nil)
	checkOneLine(t, err, []string{"s3: put k: InvalidArgument: bad (HTTP 400)"}, fakeSecret)
	if got, want := len(f.requests()), 2; got != want {
		t.Fatalf("server got %d requests, want %d (no retries)", got, want)
	}
}

func TestClient_RetryCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	c, f := newFake(t, s3.Config{MaxAttempts: 100}, func(n int, r received, w http.ResponseWriter) {
		cancel() // during the backoff that follows
		s3Error(w, http.StatusServiceUnavailable, "SlowDown", "slow down")
	})
	err := c.Put(ctx, "k", strings.NewReader("x"), 1, nil)
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "s3: put k: ") {
		t.Fatalf("Put err=%v, want context.Canceled naming the key", err)
	}
	if got := len(f.requests()); got != 1 {
		t.Fatalf("server got %d requests, want 1", got)
	}
}

func TestClient_VirtualHosted(t *testing.T) {
	c, f := newFake(t, s3.Config{Endpoint: "http://s3.walsync.test"}, func(n int, r received, w http.ResponseWriter) {
		io.WriteString(w, `<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>`)
	})
	if err := c.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := f.requests()[0]
	if got, want := got.host+" "+got.uri, "bkt.s3.walsync.test /?list-type=2&max-keys=1&prefix=p%2F"; got != want {
		t.Fatalf("Check sent %s, want %s", got, want)
	}
}

func TestClient_ListPages(t *testing.T) {
	c, f := newFake(t, s3.Config{}, func(n int, r received, w http.ResponseWriter) {
		switch n {
		case 1:
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><IsTruncated>true</IsTruncated>
<Contents><Key>p/a &amp; b</Key><LastModified>2025-01-02T03:04:05.000Z</LastModified><Size>3</Size></Contents>
<NextContinuationToken>tok+/=</NextContinuationToken></ListBucketResult>`)
		default:
			io.WriteString(w, `<ListBucketResult><IsTruncated>false</IsTruncated>
<Contents><Key>p/c</Key><LastModified>2025-01-02T03:04:06Z</LastModified><Size>0</Size></Contents></ListBucketResult>`)
		}
	})
	var got []string
	for info, err := range c.List(t.Context(), "", "a") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d:%s", info.Key, info.Size, info.ModTime.Format("05")))
	}
	if got, want := strings.Join(got, ","), "a & b:3:05,c:0:06"; got != want {
		t.Fatalf("List=%s, want %s", got, want)
	}
	reqs := f.requests()
	if got, want := reqs[1].uri, "/bkt?continuation-token=tok%2B%2F%3D&list-type=2&prefix=p%2F&start-after=p%2Fa"; got != want {
		t.Fatalf("second page request %s, want %s", got, want)
	}
}

func TestClient_DeleteBatches(t *testing.T) {
	c, f := newFake(t, s3.Config{}, func(n int, r received, w http.ResponseWriter) {
		io.WriteString(w, `<DeleteResult><Error><Key>p/k0</Key><Code>NoSuchKey</Code><Message>gone</Message></Error></DeleteResult>`)
	})
	keys := make([]string, 2500)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d<&>", i)
	}
	if err := c.Delete(t.Context(), keys...); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, r := range f.requests() {
		if got, want := r.method+" "+r.uri, "POST /bkt?delete="; got != want {
			t.Fatalf("request %s, want %s", got, want)
		}
		md5Sum := md5.Sum(r.body)
		if got, want := r.header.Get("Content-Md5"), base64.StdEncoding.EncodeToString(md5Sum[:]); got != want {
			t.Fatalf("Content-MD5 %s, want %s", got, want)
		}
		var body struct {
			Quiet   bool
			Objects []struct{ Key string } `xml:"Object"`
		}
		if err := xml.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		if !body.Quiet || len(body.Objects) > 1000 {
			t.Fatalf("DeleteObjects of %d keys, quiet %v", len(body.Objects), body.Quiet)
		}
		for _, o := range body.Objects {
			deleted = append(deleted, strings.TrimPrefix(o.Key, "p/"))
		}
	}
	if got, want := len(f.requests()), 3; got != want {
		t.Fatalf("%d requests, want %d", got, want)
	}
	if fmt.Sprint(deleted) != fmt.Sprint(keys) {
		t.Fatalf("deleted other keys than asked")
	}
}

func TestClient_DeleteKeyErrors(t *testing.T) {
	c, _ := newFake(t, s3.Config{}, func(n int, r received, w http.ResponseWriter) {
		io.WriteString(w, `<DeleteResult><Error><Key>p/a</Key><Code>AccessDenied</Code><Message>Access
Denied</Message></Error><Error><Key>p/b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>`)
	})
	err := c.Delete(t.Context(), "a", "b")
	checkOneLine(t, err, []string{"s3: delete a: AccessDenied: Access Denied (and 1 more)"}, fakeSecret)
	if !errors.Is(err, s3.ErrAccessDenied) {
		t.Fatalf("Delete err=%v, want ErrAccessDenied", err)
	}
}

func TestClient_NoRetryBadCertificate(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "")
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	c, err := s3.New(t.Context(), s3.Config{Bucket: "b", Endpoint: srv.URL, AccessKeyID: "a", SecretAccessKey: "s", MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(t.Context())
	checkOneLine(t, err, []string{`s3: check bucket "b": endpoint ` + srv.URL + ": ", "certificate"})
	if got := n.Load(); got != 1 {
		t.Fatalf("%d connections, want 1: a bad certificate is not retried", got)
	}
}
