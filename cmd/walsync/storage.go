package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/walsync/walsync/internal/dirstore"
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
// missing file:// directory is created.
func openTarget(ctx context.Context, rawURL string, create bool) (replicate.Storage, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("no target: give -b s3://bucket/prefix or -b file:///dir")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("target URL %q: %v", rawURL, err)
	}
	switch u.Scheme {
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
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("target URL %q: file URLs take an absolute path: file:///dir", rawURL)
		}
		if !filepath.IsAbs(u.Path) || u.RawQuery != "" {
			return nil, fmt.Errorf("target URL %q: file URLs take an absolute path: file:///dir", rawURL)
		}
		if !create {
			return dirstore.OpenExisting(u.Path)
		}
		return dirstore.Open(u.Path)
	case "":
		return nil, fmt.Errorf("target URL %q: missing scheme (s3:// or file://)", rawURL)
	default:
		return nil, fmt.Errorf("target URL %q: unsupported scheme %q (s3 or file)", rawURL, strings.ToLower(u.Scheme))
	}
}
