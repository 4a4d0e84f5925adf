package dirstore_test

import (
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/dirstore"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"file:///var/backups", "/var/backups"},
		{"file://localhost/var/backups", "/var/backups"},
		{"file:///var/a%20b", "/var/a b"},
		{"file:///var/a@b", "/var/a@b"},
	} {
		got, err := dirstore.ParseURL(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseURL(%q)=%q, %v, want %q", c.in, got, err, c.want)
		}
	}
}

func TestParseURL_Err(t *testing.T) {
	const secret = "CANARYs3cr3t"
	for _, c := range []struct{ in, want string }{
		{"file://relative/dir", "absolute path"},
		{"file://host/dir", "absolute path"},
		{"file:relative", "absolute path"},
		{"file:///dir?x=1", "no query"},
		{"file:///dir#x", "no query or fragment"},
		{"s3://bucket/dir", "want scheme file://"},
		{"file:///dir/%zz", "invalid percent-escape"},
		{"file://user:" + secret + "@localhost/dir", "credentials in the URL are not accepted"},
		{"file://user:" + secret + "@host/dir", "credentials in the URL are not accepted"},
		{"file://user@localhost/dir", "credentials in the URL are not accepted"},
		{"file://user:ab/" + secret + "@localhost/dir", "credentials in the URL are not accepted"},
		{"file://user:" + secret + "@localhost/%zz", "credentials in the URL are not accepted"},
		{"file:///dir?token=" + secret, "no query"},
		{"file:///%zz/dir?token=" + secret, "invalid percent-escape"},
	} {
		_, err := dirstore.ParseURL(c.in)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", c.in)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "dirstore: ") {
			t.Errorf("ParseURL(%q) err=%q, want %q", c.in, msg, c.want)
		}
		if strings.Contains(msg, secret) {
			t.Errorf("ParseURL(%q) err=%q shows the secret", c.in, msg)
		}
	}
}
