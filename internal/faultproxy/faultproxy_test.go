package faultproxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
)

// body is what the upstream answers to GET.
var body = bytes.Repeat([]byte("0123456789"), 1000)

// upstream starts a server that answers GET with body and PUT by echoing
// what it read, and counts the requests it got.
func upstream(t *testing.T) (*faultproxy.Proxy, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if r.Method == http.MethodGet {
			b = body
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return faultproxy.New(t, srv.URL), &n
}

// client has no idle connections, so each request sees the proxy's state.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, p *faultproxy.Proxy, path string) ([]byte, int, error) {
	t.Helper()
	resp, err := client.Get(p.URL() + path)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func TestProxy_Forwards(t *testing.T) {
	p, n := upstream(t)
	b, status, err := get(t, p, "/bkt/key")
	if err != nil || status != 200 || !bytes.Equal(b, body) {
		t.Fatalf("GET through the proxy: status %d, %d bytes, %v", status, len(b), err)
	}
	resp, err := client.Post(p.URL()+"/bkt/key", "", strings.NewReader("posted"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "posted" {
		t.Fatalf("POST echoed %q", b)
	}
	if got, want := p.Count("GET")*10+p.Count("POST"), 11; got != want || p.Count("") != 2 || n.Load() != 2 {
		t.Fatalf("Count GET %d POST %d all %d, upstream %d; want 1, 1, 2, 2", p.Count("GET"), p.Count("POST"), p.Count(""), n.Load())
	}
}

func TestProxy_Status(t *testing.T) {
	p, n := upstream(t)
	var fired atomic.Int32
	p.Add(faultproxy.Rule{Fault: faultproxy.Status, After: 1, Times: 2, OnFire: func() { fired.Add(1) }})
	var got []int
	for range 4 {
		b, status, err := get(t, p, "/k")
		if err != nil {
			t.Fatal(err)
		}
		if status == 503 && !strings.Contains(string(b), "<Code>SlowDown</Code>") {
			t.Fatalf("503 body %q, want SlowDown", b)
		}
		got = append(got, status)
	}
	if want := []int{200, 503, 503, 200}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if got, want := n.Load(), int32(2); got != want || fired.Load() != 2 {
		t.Fatalf("upstream got %d requests, want %d; OnFire ran %d times, want 2", got, want, fired.Load())
	}
	p.Clear()
	p.Add(faultproxy.Rule{Fault: faultproxy.Status, Status: 500})
	if b, status, _ := get(t, p, "/k"); status != 500 || !strings.Contains(string(b), "InternalError") {
		t.Fatalf("status %d %q, want 500 InternalError", status, b)
	}
	if got, want := p.Injected(), 3; got != want {
		t.Fatalf("Injected=%d, want %d", got, want)
	}
}

func TestProxy_Filters(t *testing.T) {
	p, _ := upstream(t)
	p.Add(faultproxy.Rule{Method: "GET", Key: "/bad", Query: "part", Fault: faultproxy.Status})
	for _, tt := range []struct {
		path string
		want int
	}{{"/bad?partNumber=1", 503}, {"/bad", 200}, {"/good?partNumber=1", 200}} {
		if _, status, _ := get(t, p, tt.path); status != tt.want {
			t.Fatalf("GET %s: %d, want %d", tt.path, status, tt.want)
		}
	}
	resp, err := client.Post(p.URL()+"/bad?partNumber=1", "", strings.NewReader("x"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST not filtered out: %v", err)
	}
	resp.Body.Close()
}

func TestProxy_RateIsSeeded(t *testing.T) {
	run := func(seed uint64) string {
		p, _ := upstream(t)
		p.SetSeed(seed)
		p.Add(faultproxy.Rule{Fault: faultproxy.Status, Rate: 0.5})
		var s []int
		for range 40 {
			_, status, _ := get(t, p, "/k")
			s = append(s, status)
		}
		return fmt.Sprint(s)
	}
	a, b, c := run(7), run(7), run(8)
	if a != b {
		t.Fatalf("seed 7 gave %s, then %s", a, b)
	}
	if a == c || !strings.Contains(a, "200") || !strings.Contains(a, "503") {
		t.Fatalf("seed 7 %s, seed 8 %s: want a mix that depends on the seed", a, c)
	}
}

func TestProxy_Resets(t *testing.T) {
	p, n := upstream(t)
	p.Add(faultproxy.Rule{Fault: faultproxy.ResetBefore, Times: 1})
	if _, _, err := get(t, p, "/k"); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("ResetBefore: err=%v, want ECONNRESET", err)
	}
	if n.Load() != 0 {
		t.Fatal("ResetBefore reached the upstream")
	}
	p.Add(faultproxy.Rule{Fault: faultproxy.ResetAfter, Times: 1})
	if _, _, err := get(t, p, "/k"); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("ResetAfter: err=%v, want ECONNRESET", err)
	}
	if n.Load() != 1 {
		t.Fatal("ResetAfter did not reach the upstream")
	}
	p.SetDown(true)
	if _, _, err := get(t, p, "/k"); err == nil {
		t.Fatal("request succeeded while down")
	}
	p.SetDown(false)
	if _, status, err := get(t, p, "/k"); err != nil || status != 200 || n.Load() != 2 {
		t.Fatalf("after SetDown(false): %d, %v", status, err)
	}
}

func TestProxy_TruncateCorrupt(t *testing.T) {
	p, _ := upstream(t)
	p.Add(faultproxy.Rule{Fault: faultproxy.Truncate, At: 1234, Times: 1})
	b, _, err := get(t, p, "/k")
	if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(b, body[:1234]) {
		t.Fatalf("Truncate: %d bytes, err=%v; want the first 1234 and io.ErrUnexpectedEOF", len(b), err)
	}
	p.Add(faultproxy.Rule{Fault: faultproxy.Corrupt, At: 5000, Times: 1})
	b, _, err = get(t, p, "/k")
	if err != nil || len(b) != len(body) {
		t.Fatalf("Corrupt: %d bytes, %v", len(b), err)
	}
	for i := range b {
		if (b[i] != body[i]) != (i == 5000) {
			t.Fatalf("Corrupt: byte %d is %q, sent %q", i, b[i], body[i])
		}
	}
}

// TestProxy_Stalls checks that no byte passes the stall point. A stall
// that did not happen lets the bytes through, and the test fails; the
// timeout only bounds how long the test looks.
func TestProxy_Stalls(t *testing.T) {
	p, _ := upstream(t)
	p.Add(faultproxy.Rule{Method: "GET", Fault: faultproxy.StallResponse, At: 100, Stall: time.Hour})
	resp, err := client.Get(p.URL() + "/k")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("bytes before the stall: %v", err)
	}
	more := make(chan int, 1)
	go func() {
		n, _ := resp.Body.Read(make([]byte, 10))
		more <- n
	}()
	select {
	case n := <-more:
		t.Fatalf("read %d bytes past the stall point", n)
	case <-time.After(300 * time.Millisecond):
	}
	resp.Body.Close()

	p.Add(faultproxy.Rule{Method: "PUT", Fault: faultproxy.StallRequest, At: 3, Stall: time.Hour})
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(t.Context(), "PUT", p.URL()+"/k", pr)
	req.ContentLength = 6
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	if _, err := pw.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		// The proxy reads no more, but the kernel buffers this much.
		_, err := pw.Write([]byte("def"))
		wrote <- err
		pw.Close()
	}()
	select {
	case err := <-errc:
		t.Fatalf("PUT answered (%v) although its body stalled", err)
	case <-time.After(300 * time.Millisecond):
	}
}
