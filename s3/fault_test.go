package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

// These tests put a faultproxy between the client and the test server.

// testIdle is the idle timeout of clients behind a fault proxy: short, so
// that stalls end quickly, but long enough that a busy machine does not
// stall healthy requests. Tests assert what a stall leads to, never how
// long it took.
const testIdle = time.Second

// faulty returns a direct client on a new bucket, and a client for the same
// bucket and prefix through a new fault proxy, with an idle timeout of
// testIdle and cfg's other settings.
func faulty(t *testing.T, cfg s3.Config) (direct testClient, via *s3.Client, p *faultproxy.Proxy) {
	t.Helper()
	direct = newClient(t, "p")
	p = faultproxy.New(t, direct.endpoint)
	cfg.Bucket, cfg.Prefix, cfg.Endpoint = direct.bucket, direct.prefix, p.URL()
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = testIdle
	}
	via, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return direct, via, p
}

// noHang bounds an operation that the code under test must end by itself:
// without the behaviour tested, it would wait for the stalls, which last
// an hour, and the test fails with the deadline.
func noHang(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes returns n reproducible bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func readVia(ctx context.Context, s replicate.Storage, key string, off, n int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestClient_PutStallRetried: the proxy stops reading a PUT's body. The
// attempt fails after the idle timeout and the retry stores the object.
func TestClient_PutStallRetried(t *testing.T) {
	c, via, p := faulty(t, s3.Config{})
	// More than the kernel buffers between client and proxy.
	data := randomBytes(24<<20, 1)
	p.Add(faultproxy.Rule{Method: "PUT", Fault: faultproxy.StallRequest, At: 1 << 20, Stall: time.Hour, Times: 1})
	if err := via.Put(noHang(t), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("Put through a stalled upload: %v", err)
	}
	if got := p.Count("PUT"); got < 2 {
		t.Fatalf("%d PUTs, want a retry", got)
	}
	got, err := readAll(c, "k")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), want the %d put", len(got), err, len(data))
	}
}

// TestClient_StallsRetried: a stall before the answer of HEAD, LIST and
// DELETE fails the attempt, and the retry succeeds.
func TestClient_StallsRetried(t *testing.T) {
	c, via, p := faulty(t, s3.Config{})
	put(t, c, "k", "content")
	ctx := noHang(t)
	// A HEAD answer has no body to stall: hold the request instead.
	p.Add(faultproxy.Rule{Method: "HEAD", Fault: faultproxy.None, Latency: time.Hour, Times: 1})
	if info, err := via.Head(ctx, "k"); err != nil || info.Size != 7 {
		t.Fatalf("Head=%+v, %v", info, err)
	}
	p.Add(faultproxy.Rule{Method: "GET", Query: "list-type", Fault: faultproxy.StallResponse, At: 10, Stall: time.Hour, Times: 1})
	if keys := list(t, via); strings.Join(keys, ",") != "k" {
		t.Fatalf("List=%v", keys)
	}
	p.Add(faultproxy.Rule{Method: "POST", Query: "delete", Fault: faultproxy.StallResponse, At: 0, Stall: time.Hour, Times: 1})
	if err := via.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Count("HEAD")+p.Count("GET")+p.Count("POST"), 6; got < want {
		t.Fatalf("%d requests, want %d (each one retried)", got, want)
	}
	if _, err := c.Head(ctx, "k"); !errors.Is(err, replicate.ErrNotExist) {
		t.Fatalf("Head after Delete: %v", err)
	}
}

// TestClient_ErrorsRetried: 503, 500 and resets before and after the
// server acted are retried for every operation.
func TestClient_ErrorsRetried(t *testing.T) {
	_, via, p := faulty(t, s3.Config{MaxAttempts: 4})
	ctx := noHang(t)
	for _, f := range []faultproxy.Rule{
		{Fault: faultproxy.Status, Times: 1},
		{Fault: faultproxy.Status, Status: 500, Times: 1},
		{Fault: faultproxy.ResetBefore, Times: 1},
		{Fault: faultproxy.ResetAfter, Times: 1},
	} {
		p.Clear()
		p.Add(f)
		for _, op := range []struct {
			name string
			do   func() error
		}{
			{"put", func() error { return via.Put(ctx, "k", strings.NewReader("content"), 7, nil) }},
			{"head", func() error { _, err := via.Head(ctx, "k"); return err }},
			{"get", func() error {
				b, err := readVia(ctx, via, "k", 0, -1)
				if err == nil && string(b) != "content" {
					return errors.New("read " + string(b))
				}
				return err
			}},
			{"list", func() error {
				for _, err := range via.List(ctx, "", "") {
					if err != nil {
						return err
					}
				}
				return nil
			}},
			{"delete", func() error { return via.Delete(ctx, "k") }},
		} {
			p.Clear()
			p.Add(f)
			before := p.Count("")
			if err := op.do(); err != nil {
				t.Fatalf("%v once, then %s: %v", f.Fault, op.name, err)
			}
			if p.Count("") == before+1 {
				t.Fatalf("%v once, then %s: no retry", f.Fault, op.name)
			}
		}
	}
}

// TestClient_GetResumes: GETs that fail mid-body (cut short, reset, stalled)
// resume where they stopped, and the whole-object SHA-256 check still
// covers every byte.
func TestClient_GetResumes(t *testing.T) {
	c, via, p := faulty(t, s3.Config{})
	data := randomBytes(1<<20, 2)
	if err := c.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	ctx := noHang(t)
	for _, tt := range []struct {
		name   string
		off, n int64
		rules  []faultproxy.Rule
		gets   int
	}{
		{"truncated", 0, -1, []faultproxy.Rule{{Fault: faultproxy.Truncate, At: 1000, Times: 2}}, 3},
		{"stalled", 0, -1, []faultproxy.Rule{{Fault: faultproxy.StallResponse, At: 100 << 10, Stall: time.Hour, Times: 1}}, 2},
		{"range truncated", 5, 500000, []faultproxy.Rule{{Fault: faultproxy.Truncate, At: 70000, Times: 1}}, 2},
		{"range to the end", 700000, -1, []faultproxy.Rule{{Fault: faultproxy.Truncate, At: 10, Times: 1}}, 2},
		{"resume refused once", 0, -1, []faultproxy.Rule{
			{Fault: faultproxy.Truncate, At: 3000, Times: 1},
			{Fault: faultproxy.Status, Times: 1},
		}, 3},
	} {
		p.Clear()
		for _, r := range tt.rules {
			p.Add(r)
		}
		before := p.Count("GET")
		got, err := readVia(ctx, via, "k", tt.off, tt.n)
		want := data[tt.off:]
		if tt.n >= 0 {
			want = want[:tt.n]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes (%v), want %d", tt.name, len(got), err, len(want))
		}
		if got := p.Count("GET") - before; got < tt.gets {
			t.Fatalf("%s: %d GETs, want %d", tt.name, got, tt.gets)
		}
	}

	// A byte corrupted after a resume is caught at EOF.
	p.Clear()
	p.Add(faultproxy.Rule{Fault: faultproxy.Truncate, At: 5000, Times: 1})
	p.Add(faultproxy.Rule{Fault: faultproxy.Corrupt, At: 100, Times: 1})
	if _, err := readVia(ctx, via, "k", 0, -1); !errors.Is(err, replicate.ErrChecksum) || !strings.Contains(err.Error(), "s3: get k: ") {
		t.Fatalf("read with a byte corrupted after the resume: err=%v, want ErrChecksum naming the key", err)
	}

	// A body cut short at every attempt still fails, naming the key.
	p.Clear()
	p.Add(faultproxy.Rule{Fault: faultproxy.Truncate, At: 0})
	if _, err := readVia(ctx, via, "k", 0, -1); !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "s3: get k: ") {
		t.Fatalf("read cut short every time: err=%v, want io.ErrUnexpectedEOF naming the key", err)
	}
}

// TestClient_GetResumeObjectReplaced: an object replaced while it is read
// fails the resumed read instead of splicing two contents.
func TestClient_GetResumeObjectReplaced(t *testing.T) {
	c, via, p := faulty(t, s3.Config{})
	data := randomBytes(1<<20, 3)
	if err := c.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	p.Add(faultproxy.Rule{Fault: faultproxy.Truncate, At: 200 << 10, Times: 1})
	rc, err := via.Get(noHang(t), "k", 10, 900<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	// Replace it behind walsync's back (the client never overwrites).
	other := randomBytes(1<<20, 4)
	if _, err := raw(c.endpoint).PutObject(t.Context(), &s3api.PutObjectInput{
		Bucket: &c.bucket, Key: aws.String("p/k"), Body: bytes.NewReader(other),
	}); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err == nil || !strings.Contains(err.Error(), "s3: get k: ") || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("read across a replacement: %d bytes, err=%v; want an error naming the key", len(got), err)
	}
}
