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

// openStorage opens the target named by a URL: s3://bucket[/prefix][?...]
// or file:///absolute/dir. For S3 it checks the bucket is reachable so a
// bad endpoint, bucket or credential fails at once with one line.
func openStorage(ctx context.Context, rawURL string) (replicate.Storage, error) {
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
		return dirstore.Open(u.Path)
	case "":
		return nil, fmt.Errorf("target URL %q: missing scheme (s3:// or file://)", rawURL)
	default:
		return nil, fmt.Errorf("target URL %q: unsupported scheme %q (s3 or file)", rawURL, strings.ToLower(u.Scheme))
	}
}
