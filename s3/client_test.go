package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/walsync/walsync/internal/storagetest"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testClient is a Client with what the corrupter needs to reach its objects.
type testClient struct {
	*s3.Client
	endpoint, bucket, prefix string
}

// newClient returns a Client on a new bucket of the test server; the SDK's
// default chain finds the credentials that testenv.S3 put in the environment.
func newClient(t *testing.T, prefix string) testClient {
	t.Helper()
	endpoint, bucket := testenv.S3(t)
	c, err := s3.New(t.Context(), s3.Config{Bucket: bucket, Prefix: prefix, Endpoint: endpoint, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	return testClient{Client: c, endpoint: endpoint, bucket: bucket, prefix: prefix}
}

// raw returns a plain SDK client for the test server.
func raw(endpoint string) *s3api.Client {
	return s3api.New(s3api.Options{
		Region:       testenv.Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, ""),
	})
}

func TestClient(t *testing.T) {
	storagetest.Run(t,
		func(t *testing.T) replicate.Storage { return newClient(t, "replica/one") },
		storagetest.WithCorrupter(func(t *testing.T, s replicate.Storage, key string) {
			// Overwrite the object with other bytes of the same length and
			// the old metadata, as bit rot behind S3's back would look.
			c := s.(testClient)
			api, k := raw(c.endpoint), c.prefix+"/"+key
			head, err := api.HeadObject(t.Context(), &s3api.HeadObjectInput{Bucket: &c.bucket, Key: &k})
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, aws.ToInt64(head.ContentLength))
			if _, err := api.PutObject(t.Context(), &s3api.PutObjectInput{
				Bucket: &c.bucket, Key: &k, Body: bytes.NewReader(b), Metadata: head.Metadata,
			}); err != nil {
				t.Fatal(err)
			}
		}))
}

func TestClient_NoPrefix(t *testing.T) {
	c := newClient(t, "")
	put(t, c, "top", "x")
	infos := list(t, c)
	if got, want := strings.Join(infos, ","), "top"; got != want {
		t.Fatalf("List=%s, want %s", got, want)
	}
}

func TestClient_PrefixIsolates(t *testing.T) {
	c := newClient(t, "mine")
	api := raw(c.endpoint)
	for _, k := range []string{"other/x", "mine-not/x", "minex"} {
		if _, err := api.PutObject(t.Context(), &s3api.PutObjectInput{Bucket: &c.bucket, Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	put(t, c, "a", "1")
	if got, want := strings.Join(list(t, c), ","), "a"; got != want {
		t.Fatalf("List=%s, want %s", got, want)
	}
	if _, err := api.HeadObject(t.Context(), &s3api.HeadObjectInput{Bucket: &c.bucket, Key: aws.String("mine/a")}); err != nil {
		t.Fatalf("object not stored under the prefix: %v", err)
	}
}

func put(t *testing.T, s replicate.Storage, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func list(t *testing.T, s replicate.Storage) []string {
	t.Helper()
	var keys []string
	for info, err := range s.List(t.Context(), "", "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

func TestClient_PutSendsSHA256Checksum(t *testing.T) {
	c := newClient(t, "p")
	put(t, c, "k", "checksummed")
	out, err := raw(c.endpoint).GetObject(t.Context(), &s3api.GetObjectInput{
		Bucket: &c.bucket, Key: aws.String("p/k"), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	sum := sha256.Sum256([]byte("checksummed"))
	if got, want := aws.ToString(out.ChecksumSHA256), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("stored ChecksumSHA256=%q, want %q", got, want)
	}
}

// proxy puts handler in front of the test server; next forwards a request.
func proxy(t *testing.T, endpoint string, handler func(w http.ResponseWriter, r *http.Request, next http.Handler)) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// The director keeps the Host header the SDK signed.
	next := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(w, r, next)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// clientVia returns a Client for c's bucket and prefix that goes through
// the endpoint of a proxy.
func clientVia(t *testing.T, c testClient, endpoint string) *s3.Client {
	t.Helper()
	via, err := s3.New(t.Context(), s3.Config{Bucket: c.bucket, Prefix: c.prefix, Endpoint: endpoint, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return via
}

func TestClient_PutRetryAfterStored(t *testing.T) {
	c := newClient(t, "p")
	// The first PUT reaches the server, but its answer is lost: the
	// client sees a 500 and retries, and the retry gets 412.
	var puts atomic.Int32
	endpoint := proxy(t, c.endpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut && puts.Add(1) == 1 {
			next.ServeHTTP(httptest.NewRecorder(), r)
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `<Error><Code>InternalError</Code><Message>lost</Message></Error>`)
			return
		}
		next.ServeHTTP(w, r)
	})
	via := clientVia(t, c, endpoint)
	put(t, via, "k", "content")
	if got, want := puts.Load(), int32(2); got != want {
		t.Fatalf("server saw %d PUTs, want %d", got, want)
	}
	// Other content under an existing key is still refused.
	err := via.Put(t.Context(), "k2", strings.NewReader("mine"), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Put(t.Context(), "k2", strings.NewReader("ours"), 4, nil)
	if !errors.Is(err, replicate.ErrExists) || !strings.Contains(err.Error(), "s3: put k2: ") {
		t.Fatalf("Put of other content err=%v, want ErrExists naming the key", err)
	}
}

// TestClient_PutStoredThenReset: the first PUT is stored but its
// connection is reset before the answer, and every later PUT is refused by
// resetting the connection before the body is read (as a server answering
// 412 early does). The client recognises its own object instead of failing.
func TestClient_PutStoredThenReset(t *testing.T) {
	c := newClient(t, "p")
	var puts atomic.Int32
	endpoint := proxy(t, c.endpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut {
			if puts.Add(1) == 1 {
				next.ServeHTTP(httptest.NewRecorder(), r)
			}
			panic(http.ErrAbortHandler)
		}
		next.ServeHTTP(w, r)
	})
	put(t, clientVia(t, c, endpoint), "k", "content")
	if got, want := puts.Load(), int32(1); got != want {
		t.Fatalf("server saw %d PUTs, want %d", got, want)
	}
	// Not stored at all: the retry sends it again.
	puts.Store(0)
	endpoint = proxy(t, c.endpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut && puts.Add(1) == 1 {
			panic(http.ErrAbortHandler)
		}
		next.ServeHTTP(w, r)
	})
	put(t, clientVia(t, c, endpoint), "k3", "other")
	if got, want := puts.Load(), int32(2); got != want {
		t.Fatalf("server saw %d PUTs of a lost object, want %d", got, want)
	}
}

func TestClient_PutCorruptedInTransit(t *testing.T) {
	c := newClient(t, "p")
	endpoint := proxy(t, c.endpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			b[0] ^= 1
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		next.ServeHTTP(w, r)
	})
	if err := clientVia(t, c, endpoint).Put(t.Context(), "k", strings.NewReader("content"), 7, nil); err == nil {
		t.Fatal("Put of a body corrupted in transit succeeded")
	}
	if _, err := c.Head(t.Context(), "k"); !errors.Is(err, replicate.ErrNotExist) {
		t.Fatalf("Head after refused Put err=%v, want ErrNotExist", err)
	}
}

func TestClient_GetTruncatedBody(t *testing.T) {
	c := newClient(t, "p")
	data := strings.Repeat("0123456789", 1000)
	put(t, c, "k", data)
	endpoint := proxy(t, c.endpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // close the connection mid-body
	})
	via := clientVia(t, c, endpoint)
	for _, r := range []struct{ off, n int64 }{{0, -1}, {10, 5000}} {
		rc, err := via.Get(t.Context(), "k", r.off, r.n)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "s3: get k: ") {
			t.Fatalf("Get(%d, %d) of a truncated body err=%v, want io.ErrUnexpectedEOF naming the key", r.off, r.n, err)
		}
	}
}

// checkOneLine fails the test unless err is a one-line error containing
// each of want and none of the strings in secret.
func checkOneLine(t *testing.T, err error, want []string, secret ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Fatalf("error has several lines: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Fatalf("error %q does not contain %q", msg, w)
		}
	}
	for _, s := range secret {
		if strings.Contains(msg, s) {
			t.Fatalf("error %q shows a credential", msg)
		}
	}
}

func TestClient_ErrAccessDenied(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	const secret = "not-the-secret-1234567890"
	for _, tt := range []struct{ id, secret, code string }{
		{testenv.AccessKeyID, secret, "SignatureDoesNotMatch"},
		// AWS says InvalidAccessKeyId, versitygw this (with HTTP 404).
		{"nosuchkeyid", secret, "XAdminUserNotFound"},
	} {
		c, err := s3.New(t.Context(), s3.Config{
			Bucket: bucket, Endpoint: endpoint, AccessKeyID: tt.id, SecretAccessKey: tt.secret, MaxAttempts: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Check(t.Context())
		checkOneLine(t, err, []string{`s3: check bucket "` + bucket + `": access denied (` + tt.code + ")"}, secret)
		if !errors.Is(err, s3.ErrAccessDenied) {
			t.Fatalf("Check err=%v, want ErrAccessDenied", err)
		}
		err = c.Put(t.Context(), "k", strings.NewReader("x"), 1, nil)
		checkOneLine(t, err, []string{"s3: put k: access denied (" + tt.code + ")"}, secret)
		if tt.code == "SignatureDoesNotMatch" {
			// A HEAD response has no body: all there is, is 403.
			_, err = c.Head(t.Context(), "k")
			checkOneLine(t, err, []string{"s3: head k: access denied (Forbidden)"}, secret)
		}
	}
}

func TestClient_ErrUnreachable(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	c, err := s3.New(t.Context(), s3.Config{
		Bucket: "b", Endpoint: endpoint, AccessKeyID: "id", SecretAccessKey: "hunter2secret", MaxAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(t.Context())
	checkOneLine(t, err, []string{`s3: check bucket "b": endpoint ` + endpoint + " unreachable", "connection refused"}, "hunter2secret")
	if !errors.Is(err, s3.ErrUnreachable) {
		t.Fatalf("Check err=%v, want ErrUnreachable", err)
	}
	_, err = c.Get(t.Context(), "k", 0, -1)
	checkOneLine(t, err, []string{"s3: get k: endpoint " + endpoint + " unreachable"})
}

func TestClient_ErrBucketNotExist(t *testing.T) {
	endpoint, _ := testenv.S3(t)
	c, err := s3.New(t.Context(), s3.Config{Bucket: "no-such-bucket", Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(t.Context())
	if got, want := err.Error(), `s3: bucket "no-such-bucket" does not exist`; got != want {
		t.Fatalf("Check err=%q, want %q", got, want)
	}
	if !errors.Is(err, s3.ErrBucketNotExist) {
		t.Fatalf("Check err=%v, want ErrBucketNotExist", err)
	}
	err = c.Put(t.Context(), "k", strings.NewReader("x"), 1, nil)
	if got, want := err.Error(), `s3: bucket "no-such-bucket" does not exist`; got != want {
		t.Fatalf("Put err=%q, want %q", got, want)
	}
}

func TestNew_EndpointFromEnv(t *testing.T) {
	for _, env := range []string{s3.EnvEndpointS3, s3.EnvEndpoint} {
		endpoint, bucket := testenv.S3(t)
		t.Setenv(env, endpoint)
		c, err := s3.New(t.Context(), s3.Config{Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Check(t.Context()); err != nil {
			t.Fatalf("Check with %s: %v", env, err)
		}
		t.Setenv(env, "")
	}
	t.Setenv(s3.EnvEndpointS3, "not a url")
	if _, err := s3.New(t.Context(), s3.Config{Bucket: "b"}); err == nil || !strings.Contains(err.Error(), s3.EnvEndpointS3) {
		t.Fatalf("New with a bad %s: err=%v, want one naming it", s3.EnvEndpointS3, err)
	}
}

func TestClient_PutTooLarge(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c, err := s3.New(t.Context(), s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Put(t.Context(), "k", strings.NewReader(""), s3.MaxObjectSize+1, nil)
	checkOneLine(t, err, []string{"s3: put k: size"})
}

func TestClient_CheckCanceled(t *testing.T) {
	c := newClient(t, "p")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Check(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check err=%v, want context.Canceled", err)
	}
}

func TestClient_ErrNoCredentials(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	c, err := s3.New(t.Context(), s3.Config{Bucket: bucket, Endpoint: endpoint, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(t.Context())
	checkOneLine(t, err, []string{`s3: check bucket "` + bucket + `": no AWS credentials`})
	if !errors.Is(err, s3.ErrNoCredentials) {
		t.Fatalf("Check err=%v, want ErrNoCredentials", err)
	}
}

// TestClient_GetWithoutSHA256Metadata reads objects as Litestream writes
// them, without "sha256" metadata: they read fine, and damage is still
// caught through the S3 checksum when the object has one.
func TestClient_GetWithoutSHA256Metadata(t *testing.T) {
	c := newClient(t, "p")
	api := raw(c.endpoint)
	for _, k := range []string{"p/plain", "p/checksummed"} {
		in := &s3api.PutObjectInput{Bucket: &c.bucket, Key: aws.String(k), Body: strings.NewReader("litestream bytes")}
		if k == "p/checksummed" {
			in.ChecksumAlgorithm = types.ChecksumAlgorithmSha256
		}
		if _, err := api.PutObject(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"plain", "checksummed"} {
		b, err := readAll(c, key)
		if err != nil || string(b) != "litestream bytes" {
			t.Fatalf("Get(%q)=%q, %v; want the content", key, b, err)
		}
	}
	path := testenv.ObjectPath(t, c.bucket, "p/checksummed")
	if err := os.WriteFile(path, []byte("LITESTREAM bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := readAll(c, "checksummed")
	if !errors.Is(err, replicate.ErrChecksum) || !strings.Contains(err.Error(), "s3: get checksummed: ") {
		t.Fatalf("Get of a damaged object err=%v, want ErrChecksum naming the key", err)
	}
}

func readAll(s replicate.Storage, key string) ([]byte, error) {
	rc, err := s.Get(context.Background(), key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
