package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestProxyLatency(t *testing.T) {
	const body = "0123456789"
	hits := make(chan string, 10)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.Method + " " + r.URL.Path
		io.WriteString(w, body)
	}))
	defer backend.Close()
	p, err := startProxy(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	entered := make(chan time.Duration, 1)
	release := make(chan struct{})
	p.wait = func(ctx context.Context, d time.Duration) error {
		entered <- d
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	get := func() <-chan string {
		done := make(chan string, 1)
		go func() {
			resp, err := http.Get(p.url + "/b/db.db/0000/0000000000000001-0000000000000001.ltx")
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- string(b)
		}()
		return done
	}

	t.Run("OK", func(t *testing.T) {
		p.setLatency(20 * time.Millisecond)
		defer p.setLatency(0)
		done := get()
		select {
		case got := <-entered:
			if want := 20 * time.Millisecond; got != want {
				t.Fatalf("waited %s, want %s", got, want)
			}
		case r := <-done:
			t.Fatalf("answered without the delay: %q", r)
		}
		// The request is held in the wait: counted, not yet forwarded nor
		// answered.
		if got, want := p.snapshot()[ReqGet], int64(1); got != want {
			t.Fatalf("GETs counted = %d, want %d", got, want)
		}
		select {
		case h := <-hits:
			t.Fatalf("forwarded before the delay: %s", h)
		case r := <-done:
			t.Fatalf("answered before the delay: %q", r)
		default:
		}
		close(release)
		if got := <-done; got != body {
			t.Fatalf("response = %q, want %q", got, body)
		}
		if got, want := len(hits), 1; got != want {
			t.Fatalf("backend hits = %d, want %d", got, want)
		}
		<-hits
		if got, want := p.byteSnapshot()[ReqGet], int64(len(body)); got != want {
			t.Fatalf("GET bytes = %d, want %d", got, want)
		}
	})
	t.Run("NoLatency", func(t *testing.T) {
		if got := <-get(); got != body {
			t.Fatalf("response = %q, want %q", got, body)
		}
		select {
		case d := <-entered:
			t.Fatalf("waited %s with no latency", d)
		default:
		}
		<-hits
		if got, want := p.snapshot()[ReqGet], int64(2); got != want {
			t.Fatalf("GETs counted = %d, want %d", got, want)
		}
	})
}

func TestProxyActivity(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	p, err := startProxy(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := p.watch("b/run1/")
	put := func(path string) {
		r, err := http.NewRequest("PUT", p.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	later := time.Now().Add(time.Hour)

	// The count of stored LTX files is taken before the client gets the
	// response.
	put("/b/run1/db.db/lease/0000000000000001")
	if a.quiet(later, time.Minute) {
		t.Fatal("quiet before an LTX file was stored")
	}
	put("/b/run2/db.db/0000/0000000000000001-0000000000000001.ltx") // another prefix
	if got := a.ltx.Load(); got != 0 {
		t.Fatalf("LTX files = %d, want 0", got)
	}
	put("/b/run1/db.db/0009/0000000000000001-0000000000000001.ltx")
	if got, want := a.ltx.Load(), int64(1); got != want {
		t.Fatalf("LTX files = %d, want %d", got, want)
	}

	// A request in flight, then ended, on a prefix no HTTP request
	// reaches (a handler notes a request's end after its response).
	b := p.watch("b/run3/")
	b.ltx.Store(1)
	end := p.begin("/b/run3/db.db/0000/0000000000000002-0000000000000002.ltx")
	if b.quiet(later, time.Minute) {
		t.Fatal("quiet with a request in flight")
	}
	p.begin("/b/run4/x")() // another prefix: not followed
	end()
	last := time.Unix(0, b.last.Load())
	if !b.quiet(last.Add(time.Minute), time.Minute) {
		t.Fatal("not quiet a minute after the last request")
	}
	if b.quiet(last.Add(time.Second), time.Minute) {
		t.Fatal("quiet a second after the last request")
	}
	if got := b.inflight.Load(); got != 0 {
		t.Fatalf("in flight = %d, want 0", got)
	}

	p.unwatch(a)
	put("/b/run1/db.db/0000/0000000000000003-0000000000000003.ltx")
	if got, want := a.ltx.Load(), int64(1); got != want {
		t.Fatalf("LTX files after unwatch = %d, want %d", got, want)
	}
}
