package s3_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/walsync/walsync/s3"
)

func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want s3.Config
	}{
		{"s3://bucket", s3.Config{Bucket: "bucket"}},
		{"s3://bucket/", s3.Config{Bucket: "bucket"}},
		{"s3://bucket/a/b/", s3.Config{Bucket: "bucket", Prefix: "a/b"}},
		{"s3://bucket//a", s3.Config{Bucket: "bucket", Prefix: "a"}},
		{"s3://my.bucket_1/pre%20fix", s3.Config{Bucket: "my.bucket_1", Prefix: "pre fix"}},
		{"s3://b/p?endpoint=http://127.0.0.1:7070&region=eu-west-1&path-style=true", s3.Config{
			Bucket: "b", Prefix: "p", Endpoint: "http://127.0.0.1:7070", Region: "eu-west-1", PathStyle: true,
		}},
		{"s3://b?path-style=false&endpoint=https%3A%2F%2Fs3.example.com%2Fbase", s3.Config{
			Bucket: "b", Endpoint: "https://s3.example.com/base",
		}},
	} {
		got, err := s3.ParseURL(tt.in)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", tt.in, err)
		}
		if got != tt.want {
			t.Fatalf("ParseURL(%q)=%#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestParseURL_Err(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "want scheme s3://"},
		{"bucket/prefix", "want scheme s3://"},
		{"http://bucket/prefix", "want scheme s3://"},
		{"s3:bucket", "want s3://bucket/prefix"},
		{"s3:///prefix", "no bucket"},
		{"s3://", "no bucket"},
		{"s3://bucket:9000/p", "no port"},
		{"s3://bucket/p#frag", "fragment"},
		{"s3://bad*bucket/p", "Bucket"},
		{"s3://b/a//b", "empty path element"},
		{"s3://b?endpoint=ftp://host", "want an http or https URL"},
		{"s3://b?endpoint=http://", "no host"},
		{"s3://b?path-style=maybe", "path-style"},
		{"s3://b?region=us-east-1&region=eu-west-1", "given 2 times"},
		{"s3://b?prefix=x", `unknown parameter "prefix"`},
		{"s3://b?region=us%20east", "Region"},
		{"s3://b/%zz", "invalid URL escape"},
		{"s3://b?a=%zz", "query"},
	} {
		_, err := s3.ParseURL(tt.in)
		if err == nil {
			t.Fatalf("ParseURL(%q) succeeded", tt.in)
		}
		if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "s3: ") {
			t.Fatalf("ParseURL(%q) err=%q, want one line starting \"s3: \" containing %q", tt.in, msg, tt.want)
		}
	}
}

func TestParseURL_ErrCredentialsNotShown(t *testing.T) {
	for _, in := range []string{
		"s3://AKID:hunter2secret@bucket/p",
		"s3://b/p?endpoint=http://AKID:hunter2secret@127.0.0.1:1",
		"s3://AKID:hunter2secret@bucket/%zz",
		"s3://AKID:abc/hunter2secret@bucket/p",
		"s3://AKID:123/hunter2secret@bucket/p",
		"s3://AKID:abc#hunter2secret@bucket/p",
		"s3://b/p?endpoint=http://AKID:abc/hunter2secret@127.0.0.1:1",
		"s3://b/p?endpoint=http://127.0.0.1:1/%zz&hunter2secret",
		"s3://b/p?X-Amz-Signature=hunter2secret",
		"s3://b/p?path-style=hunter2secret",
		"s3://b/p?hunter2secret=1",
		"s3://b/p?region=a&region=hunter2secret",
		"hunter2secret:x@bucket/p",
	} {
		_, err := s3.ParseURL(in)
		if err == nil {
			t.Fatalf("ParseURL(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), "hunter2secret") || strings.Contains(err.Error(), "AKID") {
			t.Fatalf("ParseURL error shows the password: %q", err)
		}
		if strings.Contains(in, "://") && strings.Contains(in, "@") && !strings.Contains(err.Error(), "credentials in the URL are not accepted") {
			t.Errorf("ParseURL(%q) err=%q, want the credentials refused", in, err)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := s3.Config{Bucket: "b"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%v): %v", ok, err)
	}
	for _, tt := range []struct {
		cfg   s3.Config
		field string
	}{
		{s3.Config{}, "Bucket"},
		{s3.Config{Bucket: "b", Prefix: "/p"}, "Prefix"},
		{s3.Config{Bucket: "b", Prefix: "p/"}, "Prefix"},
		{s3.Config{Bucket: "b", Endpoint: "127.0.0.1:7070"}, "Endpoint"},
		{s3.Config{Bucket: "b", Endpoint: "http://user:pw@h"}, "Endpoint"},
		{s3.Config{Bucket: "b", AccessKeyID: "id"}, "SecretAccessKey"},
		{s3.Config{Bucket: "b", SecretAccessKey: "secret"}, "AccessKeyID"},
		{s3.Config{Bucket: "b", MaxAttempts: -1}, "MaxAttempts"},
	} {
		err := tt.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Fatalf("Validate(%v)=%v, want an error naming %s", tt.cfg, err, tt.field)
		}
		if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "secret") {
			t.Fatalf("Validate error shows a credential: %q", err)
		}
	}
}

func TestConfig_StringHidesSecret(t *testing.T) {
	cfg := s3.Config{Bucket: "b", Prefix: "p", AccessKeyID: "AKID", SecretAccessKey: "hunter2secret", PathStyle: true}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, cfg); strings.Contains(got, "hunter2secret") {
			t.Fatalf("Sprintf(%q, cfg)=%q shows the secret", format, got)
		}
		if got := fmt.Sprintf(format, &cfg); strings.Contains(got, "hunter2secret") {
			t.Fatalf("Sprintf(%q, &cfg)=%q shows the secret", format, got)
		}
	}
	if got, want := cfg.String(), "s3://b/p?path-style=true"; got != want {
		t.Fatalf("String()=%q, want %q", got, want)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"s3://bucket", "s3://b/a/b/", "s3://b/p?endpoint=http://127.0.0.1:7070&region=r&path-style=true",
		"s3://b/%20x%2F?", "s3://b#", "s3://u:p@b/x", "s3:b", "s3://b:1/", "s3://b/a//b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := s3.ParseURL(s)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "s3: ") {
				t.Fatalf("ParseURL(%q) err=%q, want one line starting \"s3: \"", s, msg)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseURL(%q)=%#v, which does not validate: %v", s, cfg, err)
		}
		again, err := s3.ParseURL(cfg.String())
		if err != nil {
			t.Fatalf("ParseURL(%q) of ParseURL(%q).String(): %v", cfg.String(), s, err)
		}
		if again != cfg {
			t.Fatalf("ParseURL(%q).String()=%q parses to %#v, want %#v", s, cfg.String(), again, cfg)
		}
	})
}

func ExampleParseURL() {
	cfg, err := s3.ParseURL("s3://backups/prod/db?endpoint=http://127.0.0.1:7070&path-style=true")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Bucket, cfg.Prefix, cfg.Endpoint, cfg.PathStyle)

	_, err = s3.ParseURL("s3://backups/prod?endpoint=127.0.0.1:7070")
	fmt.Println(err)
	// Output:
	// backups prod/db http://127.0.0.1:7070 true
	// s3: invalid URL "s3://backups/prod": Endpoint: not a URL (want http(s)://host[:port]): first path segment in URL cannot contain colon
}
