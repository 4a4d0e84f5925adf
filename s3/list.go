package s3

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/walsync/walsync/replicate"
)

// List yields the objects whose keys (relative to the prefix) start with
// prefix and sort after startAfter, in ascending order, one
// ListObjectsV2 page of up to 1000 keys at a time.
func (c *Client) List(ctx context.Context, prefix, startAfter string) iter.Seq2[replicate.ObjectInfo, error] {
	return func(yield func(replicate.ObjectInfo, error) bool) {
		after := ""
		if startAfter != "" {
			after = c.key(startAfter)
		}
		token := ""
		for {
			page, err := c.listPage(ctx, c.key(prefix), after, token, 0)
			if err != nil {
				yield(replicate.ObjectInfo{}, c.wrap(ctx, "list", prefix, err))
				return
			}
			for _, obj := range page.Contents {
				info := replicate.ObjectInfo{Key: c.trimPrefix(obj.Key), Size: obj.Size, ModTime: obj.LastModified}
				if !yield(info, nil) {
					return
				}
			}
			if !page.IsTruncated || page.NextContinuationToken == "" {
				return
			}
			token = page.NextContinuationToken
		}
	}
}

// listResult is the part of a ListObjectsV2 response that List reads.
type listResult struct {
	Contents []struct {
		Key          string
		Size         int64
		LastModified time.Time
	}
	IsTruncated           bool
	NextContinuationToken string
}

// maxListBody is the most of a ListObjectsV2 response that is read: a page
// of 1000 keys of up to 1024 bytes each, and their XML.
const maxListBody = 4 << 20

// listPage sends one ListObjectsV2 request: full keys starting with prefix,
// after startAfter or continuing from token, at most maxKeys (0: the
// server's page size, 1000 on S3).
func (c *Client) listPage(ctx context.Context, prefix, startAfter, token string, maxKeys int) (*listResult, error) {
	q := url.Values{"list-type": {"2"}}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if startAfter != "" {
		q.Set("start-after", startAfter)
	}
	if token != "" {
		q.Set("continuation-token", token)
	}
	if maxKeys > 0 {
		q.Set("max-keys", strconv.Itoa(maxKeys))
	}
	resp, err := c.do(ctx, &request{method: http.MethodGet, query: q.Encode(), payload: emptySHA256})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page listResult
	if err := xml.NewDecoder(io.LimitReader(resp.Body, maxListBody)).Decode(&page); err != nil {
		return nil, fmt.Errorf("ListObjectsV2 response: %w", err)
	}
	return &page, nil
}
