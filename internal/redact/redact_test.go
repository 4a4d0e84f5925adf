package redact_test

import (
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/redact"
)

// canary is the secret every case hides.
const canary = "CANARYs3cr3t"

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"s3://bucket/prefix", "s3://bucket/prefix"},
		{"s3://bucket/p?endpoint=http://127.0.0.1:7070&region=us-east-1&path-style=true",
			"s3://bucket/p?endpoint=http://127.0.0.1:7070&region=us-east-1&path-style=true"},
		{"file:///var/backups", "file:///var/backups"},
		{"file:///var/a@b/c", "file:///var/a@b/c"},
		{"http://127.0.0.1:9000/bucket/db@x/k", "http://127.0.0.1:9000/bucket/db@x/k"},
		{"/var/backups", "/var/backups"},
		{"s3://AKIACANARY:" + canary + "@bucket/p", "s3://REDACTED@bucket/p"},
		{"s3://AKIACANARY:" + canary + "@bucket/%zz", "s3://REDACTED@bucket/%zz"},
		{"s3://AKIACANARY:ab/" + canary + "@bucket/p", "s3://REDACTED@bucket/p"},
		{"s3://AKIACANARY:123/" + canary + "@bucket/p", "s3://REDACTED@bucket/p"},
		{"s3://AKIACANARY:ab#" + canary + "@bucket/p", "s3://REDACTED@bucket/p"},
		{"s3://AKIACANARY:ab?" + canary + "@bucket/p", "s3://REDACTED@bucket/p"},
		{"s3://AKIACANARY%3A" + canary + "@bucket/p", "s3://REDACTED@bucket/p"},
		{"https://u:" + canary + "@host/x", "https://REDACTED@host/x"},
		{"file://u:" + canary + "@localhost/dir", "file://REDACTED@localhost/dir"},
		{"s3://b/p?endpoint=http://u:" + canary + "@127.0.0.1:1", "s3://b/p?endpoint=http://REDACTED@127.0.0.1:1"},
		{"s3://b/p?endpoint=http%3A%2F%2Fu%3A" + canary + "%40h", "s3://b/p?endpoint=http://REDACTED@h"},
		{"https://h/k?X-Amz-Credential=AKIACANARY&X-Amz-Signature=" + canary + "&path-style=true",
			"https://h/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&path-style=true"},
		{"https://h/k?sessiontoken=" + canary + "%zz", "https://h/k?sessiontoken=REDACTED"},
		{"https://h/k?" + canary + "1", "https://h/k?REDACTED"},
		{"https://h/k?region=a@" + canary, "https://h/k?region=REDACTED"},
		{"https://h/k?region=" + canary + "&path-style=" + canary + "&x-id=" + canary, "https://h/k?region=REDACTED&path-style=REDACTED&x-id=REDACTED"},
		{"https://h/k?partNumber=3&uploadId=" + canary, "https://h/k?partNumber=3&uploadId=REDACTED"},
		{"https://h/k#" + canary, "https://h/k#REDACTED"},
		{"AKIACANARY:" + canary + "@bucket", "REDACTED"},
		{canary, "REDACTED"},
	} {
		got := redact.URL(c.in)
		if got != c.want {
			t.Errorf("URL(%q)=%q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, canary) || strings.Contains(got, "AKIACANARY") {
			t.Errorf("URL(%q)=%q holds the secret", c.in, got)
		}
	}
}

func TestHasUserinfo(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"s3://bucket/p", false},
		{"s3://bucket/p?endpoint=http://127.0.0.1:1", false},
		{"file:///var/a@b", false},
		{"http://127.0.0.1:9000/k@x", false},
		{"s3://u@bucket", true},
		{"s3://u:p@bucket/%zz", true},
		{"s3://u:p/q@bucket/x", true},
		{"file://u:p@localhost/dir", true},
		{"s3://u%3Ap@bucket", true},
		{"s3://u:123/p@bucket", true},
		{"http://minio:9000/k@x", true}, // may be: hidden in doubt
	} {
		if got := redact.HasUserinfo(c.in); got != c.want {
			t.Errorf("HasUserinfo(%q)=%v, want %v", c.in, got, c.want)
		}
	}
}

func TestText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"open /var/lib/app.db: no such file", "open /var/lib/app.db: no such file"},
		{`parse "s3://AKIACANARY:` + canary + `@bucket/%zz": invalid URL escape "%zz"`,
			`parse "s3://REDACTED@bucket/%zz": invalid URL escape "%zz"`},
		{`Put "http://127.0.0.1:1/b/k?X-Amz-Signature=` + canary + `": dial tcp: refused`,
			`Put "http://127.0.0.1:1/b/k?X-Amz-Signature=REDACTED": dial tcp: refused`},
		{`Get "https://u:a\"` + canary + `@h/x": EOF`, `Get "https://REDACTED@h/x": EOF`},
		{"unknown command s3://u:" + canary + "@b/x for walsync", "unknown command s3://REDACTED@b/x for walsync"},
		{"Authorization: AWS4-HMAC-SHA256 Credential=AKIACANARY/x, SignedHeaders=host, Signature=" + canary,
			"Authorization: AWS4-HMAC-SHA256 Credential=REDACTED, SignedHeaders=host, Signature=REDACTED"},
		{"aws_secret_access_key=" + canary + " aws_session_token=" + canary, "aws_secret_access_key=REDACTED aws_session_token=REDACTED"},
		{"read token: open /x: denied", "read token: open /x: denied"},
		{"add /cwd/s3:/b/p?" + canary + ": does not exist", "add /cwd/s3:/b/p?REDACTED: does not exist"},
		{"add /cwd/s3:/b/p?endpoint=http%3A%2F%2Fu%3A" + canary + "%40h: x", "add /cwd/s3:/b/p?endpoint=http://REDACTED@h: x"},
		{"name \"s3://b/p?path-style=" + canary + "\"", "name \"s3://b/p?path-style=REDACTED\""},
		{"C:/Users/x 2026-01-01T00:00:00Z", "C:/Users/x 2026-01-01T00:00:00Z"},
		{"open /home/u/s3:/AKIACANARY:" + canary + "@bucket/x: no such file", "open /home/u/REDACTED@bucket/x: no such file"},
		{"target s3:AKIACANARY:" + canary + "@bucket", "target REDACTED@bucket"},
		{`{"msg":"x","target":"s3://REDACTED@b","db":"app@x","t":"12:00:00"}`, `{"msg":"x","target":"s3://REDACTED@b","db":"app@x","t":"12:00:00"}`},
	} {
		got := redact.Text(c.in)
		if got != c.want {
			t.Errorf("Text(%q)=\n%q, want\n%q", c.in, got, c.want)
		}
		if strings.Contains(got, canary) || strings.Contains(got, "AKIACANARY") {
			t.Errorf("Text(%q)=%q holds the secret", c.in, got)
		}
	}
}

func FuzzURL(f *testing.F) {
	f.Add("s3://u:p@bucket/p?endpoint=http://v:q@h&region=r#frag")
	f.Add("file://u:p/q@localhost/%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		got := redact.URL(raw)
		if redact.HasUserinfo(raw) && got != redact.Mark && !strings.Contains(got, "://REDACTED@") {
			t.Fatalf("URL(%q)=%q keeps user information", raw, got)
		}
		if again := redact.URL(got); again != got && got != redact.Mark {
			t.Fatalf("URL not idempotent: %q -> %q -> %q", raw, got, again)
		}
	})
}
