package s3

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/walsync/walsync/replicate"
)

var _ replicate.KeyChecker = (*Client)(nil)

// MaxKeyLen is the longest object key S3 stores, in bytes of UTF-8. The
// client's prefix counts against it.
const MaxKeyLen = 1024

// CheckKey returns nil if the bucket can hold key below the client's
// prefix, or an error matching [replicate.ErrInvalidKey] that says why not:
// the key is empty or not valid UTF-8, the prefix and key together are
// longer than [MaxKeyLen] bytes, it holds a control character (ListObjects
// answers in XML 1.0, which cannot carry most of them), or it has a "." or
// ".." element (which HTTP clients and proxies may resolve in the request
// path). It sends no request.
func (c *Client) CheckKey(key string) error {
	full := c.key(key)
	switch {
	case key == "":
		return fmt.Errorf("s3: %w: empty", replicate.ErrInvalidKey)
	case !utf8.ValidString(key):
		return fmt.Errorf("s3: %w %q: not valid UTF-8", replicate.ErrInvalidKey, key)
	case len(full) > MaxKeyLen:
		return fmt.Errorf("s3: %w: %d bytes with the prefix %q, over S3's limit of %d", replicate.ErrInvalidKey, len(full), c.prefix, MaxKeyLen)
	case strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("s3: %w %q: contains a control character", replicate.ErrInvalidKey, key)
	}
	for elem := range strings.SplitSeq(key, "/") {
		if elem == "." || elem == ".." {
			return fmt.Errorf("s3: %w %q: path element %q", replicate.ErrInvalidKey, key, elem)
		}
	}
	return nil
}
