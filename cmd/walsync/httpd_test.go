package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHealthHTTPD: the responder answers GET and HEAD of its paths with
// their status, content type and length, ignores the query, and refuses
// other methods, unknown paths, malformed requests and oversized headers.
func TestHealthHTTPD(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHTTPD(ln, map[string]endpoint{
		"/x": func(context.Context) (int, string, []byte) { return 503, "text/x", []byte("body\n") },
	})
	done := make(chan struct{})
	go func() { h.serve(); close(done) }()
	defer func() { h.close(time.Second); <-done }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/x?a=b")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "text/x" || string(b) != "body\n" || resp.ContentLength != 5 {
		t.Fatalf("GET /x: %s %q %q (%d)", resp.Status, resp.Header.Get("Content-Type"), b, resp.ContentLength)
	}
	resp, err = http.Head(base + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.ContentLength != 5 {
		t.Fatalf("HEAD /x: %s, length %d", resp.Status, resp.ContentLength)
	}
	for _, c := range []struct{ method, path string }{{"GET", "/y"}, {"POST", "/x"}} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[string]int{"GET": 404, "POST": 405}[c.method]; resp.StatusCode != want {
			t.Fatalf("%s %s: %s, want %d", c.method, c.path, resp.Status, want)
		}
	}
	raw := func(req string) string {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := raw("NONSENSE\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Fatalf("malformed request answered %q", got)
	}
	if got := raw("GET /x HTTP/1.1\r\nX: " + strings.Repeat("a", 20<<10) + "\r\n\r\n"); got != "" {
		t.Fatalf("oversized header answered %q, want the connection closed", got)
	}
}
