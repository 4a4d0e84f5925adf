package s3_test

import (
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/s3"
)

func TestParseURL_IdleTimeoutPartSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want s3.Config
	}{
		{"s3://b?idle-timeout=200ms", s3.Config{Bucket: "b", IdleTimeout: 200 * time.Millisecond}},
		{"s3://b?part-size=5MiB", s3.Config{Bucket: "b", PartSize: 5 << 20}},
		{"s3://b?part-size=1GiB", s3.Config{Bucket: "b", PartSize: 1 << 30}},
		{"s3://b?part-size=6291456", s3.Config{Bucket: "b", PartSize: 6 << 20}},
		{"s3://b?part-size=5121KiB", s3.Config{Bucket: "b", PartSize: 5121 << 10}},
	} {
		got, err := s3.ParseURL(tt.in)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", tt.in, err)
		}
		if got != tt.want {
			t.Fatalf("ParseURL(%q)=%#v, want %#v", tt.in, got, tt.want)
		}
		if back, err := s3.ParseURL(got.String()); err != nil || back != got {
			t.Fatalf("ParseURL(%q)=%#v, %v; want it back", got.String(), back, err)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"s3://b?idle-timeout=0s", "idle-timeout"},
		{"s3://b?idle-timeout=soon", "idle-timeout"},
		{"s3://b?part-size=4MiB", "PartSize"},
		{"s3://b?part-size=6GiB", "part-size"},
		{"s3://b?part-size=-1", "part-size"},
		{"s3://b?part-size=5MB", "part-size"},
	} {
		_, err := s3.ParseURL(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("ParseURL(%q) err=%v, want one naming %q", tt.in, err, tt.want)
		}
	}
	if err := (s3.Config{Bucket: "b", IdleTimeout: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "IdleTimeout") {
		t.Fatalf("Validate of a negative IdleTimeout: %v", err)
	}
}
