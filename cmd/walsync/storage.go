package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/internal/redact"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

// openStorage opens the target named by a URL, for the commands that write
// to it (watch, snapshot, bench): s3://bucket[/prefix][?...] or
// file:///absolute/dir, whose directory is created if missing. For S3 it
// checks the bucket is reachable so a bad endpoint, bucket or credential
// fails at once with one line.
func openStorage(ctx context.Context, rawURL string) (replicate.Storage, error) {
	return openTarget(ctx, rawURL, true)
}

// openExistingStorage opens the target named by a URL for the commands that
// only read it (list, restore): a file:// directory must exist, so that a
// mistyped one is an error naming it rather than an empty target, and
// nothing is created.
func openExistingStorage(ctx context.Context, rawURL string) (replicate.Storage, error) {
	return openTarget(ctx, rawURL, false)
}

// openTarget opens the target named by a URL; create says whether a
// missing file:// directory is created. Errors name the URL redacted
// ([redact.URL]); a URL with user information is refused without
// repeating it.
func openTarget(ctx context.Context, rawURL string, create bool) (replicate.Storage, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("no target: give -b s3://bucket/prefix or -b file:///dir")
	}
	scheme := urlScheme(rawURL)
	switch scheme {
	case "s3":
		cfg, err := s3.ParseURL(rawURL)
		if err != nil {
			return nil, err
		}
		c, err := s3.New(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if err := c.Check(ctx); err != nil {
			return nil, err
		}
		return c, nil
	case "file":
		dir, err := dirstore.ParseURL(rawURL)
		if err != nil {
			return nil, err
		}
		if !create {
			return dirstore.OpenExisting(dir)
		}
		return dirstore.Open(dir)
	}
	shown := ""
	if r := redact.URL(rawURL); r != redact.Mark {
		shown = " " + strconv.Quote(r)
	}
	switch {
	case redact.HasUserinfo(rawURL):
		return nil, fmt.Errorf("target URL%s: %s", shown, errCredentialsInURL)
	case scheme == "":
		return nil, fmt.Errorf("target URL%s: missing scheme (s3:// or file://)", shown)
	default:
		return nil, fmt.Errorf("target URL%s: unsupported scheme (want s3:// or file://)", shown)
	}
}

// errCredentialsInURL refuses user information in a target URL.
var errCredentialsInURL = errors.New("credentials in the URL are not accepted; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile")

// urlScheme returns the lower-cased scheme of a URL, or "" if it has none.
func urlScheme(s string) string {
	scheme, _, ok := strings.Cut(s, ":")
	if !ok || scheme == "" {
		return ""
	}
	for i, c := range []byte(scheme) {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return ""
		}
	}
	return strings.ToLower(scheme)
}
