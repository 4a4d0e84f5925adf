package s3

import (
	"net/url"
	"testing"
	"time"
)

func TestEscapePath(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"a/b-c_d.e~f/0123", "a/b-c_d.e~f/0123"},
		{"with space", "with%20space"},
		{"plus+sign", "plus%2Bsign"},
		{"percent%20and%2F", "percent%2520and%252F"},
		{"ünï/日本", "%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC"},
		{"q?a=b&c#f", "q%3Fa%3Db%26c%23f"},
		{"star*(p)'q';:,@$!", "star%2A%28p%29%27q%27%3B%3A%2C%40%24%21"},
		{"//lead", "//lead"},
	} {
		got := escapePath(tt.in)
		if got != tt.want {
			t.Fatalf("escapePath(%q)=%q, want %q", tt.in, got, tt.want)
		}
		// The URL keeps this form on the wire and in the signature.
		u := url.URL{Path: "/" + tt.in, RawPath: "/" + got}
		if got, want := u.EscapedPath(), "/"+tt.want; got != want {
			t.Fatalf("EscapedPath of %q=%q, want %q", tt.in, got, want)
		}
	}
}

func TestClient_URL(t *testing.T) {
	for _, tt := range []struct {
		endpoint, bucket string
		pathStyle        bool
		object, root     string // URLs of key "a b/c" and of the bucket
	}{
		{"https://s3.us-east-1.amazonaws.com", "bkt", false,
			"https://bkt.s3.us-east-1.amazonaws.com/a%20b/c", "https://bkt.s3.us-east-1.amazonaws.com/"},
		{"https://s3.example.com", "bkt", true,
			"https://s3.example.com/bkt/a%20b/c", "https://s3.example.com/bkt"},
		{"https://s3.example.com/base/", "bkt", false,
			"https://bkt.s3.example.com/base/a%20b/c", "https://bkt.s3.example.com/base/"},
		{"http://127.0.0.1:7070", "bkt", false, "http://127.0.0.1:7070/bkt/a%20b/c", "http://127.0.0.1:7070/bkt"},
		{"http://[::1]:7070", "bkt", false, "http://[::1]:7070/bkt/a%20b/c", "http://[::1]:7070/bkt"},
		{"http://localhost:7070", "bkt", false, "http://localhost:7070/bkt/a%20b/c", "http://localhost:7070/bkt"},
		// Not host name labels: dots over TLS, capitals, underscores.
		{"https://s3.example.com", "my.bkt", false, "https://s3.example.com/my.bkt/a%20b/c", "https://s3.example.com/my.bkt"},
		{"http://s3.example.com", "my.bkt", false, "http://my.bkt.s3.example.com/a%20b/c", "http://my.bkt.s3.example.com/"},
		{"https://s3.example.com", "My_Bkt", false, "https://s3.example.com/My_Bkt/a%20b/c", "https://s3.example.com/My_Bkt"},
	} {
		c := &Client{bucket: tt.bucket}
		if err := c.setEndpoint(tt.endpoint, tt.pathStyle); err != nil {
			t.Fatal(err)
		}
		if got := c.url("a b/c", "").String(); got != tt.object {
			t.Fatalf("%s %s path-style=%v: object URL %s, want %s", tt.endpoint, tt.bucket, tt.pathStyle, got, tt.object)
		}
		if got := c.url("", "").String(); got != tt.root {
			t.Fatalf("%s %s path-style=%v: bucket URL %s, want %s", tt.endpoint, tt.bucket, tt.pathStyle, got, tt.root)
		}
	}
	if got, want := awsEndpoint("eu-west-3"), "https://s3.eu-west-3.amazonaws.com"; got != want {
		t.Fatalf("awsEndpoint=%s, want %s", got, want)
	}
}

func TestBackoff(t *testing.T) {
	for attempt, max := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 6: 3200 * time.Millisecond, 7: 5 * time.Second, 100: 5 * time.Second} {
		for range 100 {
			if d := backoff(attempt); d < max/2 || d > max {
				t.Fatalf("backoff(%d)=%v, want %v..%v", attempt, d, max/2, max)
			}
		}
	}
}

func FuzzEscapePath(f *testing.F) {
	for _, s := range []string{"a/b", "with space", "ü+%~", "q?a=b#c", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := escapePath(s)
		for i := 0; i < len(e); i++ {
			if c := e[i]; !unreserved(c) && c != '/' && c != '%' {
				t.Fatalf("escapePath(%q)=%q keeps %q", s, e, c)
			}
		}
		if got, err := url.PathUnescape(e); err != nil || got != s {
			t.Fatalf("PathUnescape(escapePath(%q))=%q, %v", s, got, err)
		}
	})
}
