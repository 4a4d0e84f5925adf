package s3

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/walsync/walsync/replicate"
)

// Get opens key for reading n bytes from offset off, or to the end if n < 0.
//
// A whole-object read (off 0, n < 0) verifies the content at EOF against
// the "sha256" metadata or, for an object without it, against its S3
// checksum if it has one; a mismatch is an error matching
// [replicate.ErrChecksum]. A range that runs past the end of the object is
// an error matching [io.ErrUnexpectedEOF], from Get or from the reader, as
// is a body that ends early. A missing key is an error matching
// [replicate.ErrNotExist]. Reads are not retried: a failed read is for the
// caller to retry.
func (c *Client) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := c.get(ctx, key, off, n)
	if err != nil {
		return nil, c.wrap(ctx, "get", key, err)
	}
	return rc, nil
}

func (c *Client) get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if key == "" {
		return nil, errors.New("empty key")
	}
	if off < 0 {
		return nil, fmt.Errorf("negative offset %d", off)
	}
	if n == 0 {
		// An empty range cannot be requested; check that it exists.
		info, err := c.head(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, fmt.Errorf("offset %d past the end of %d bytes: %w", off, info.Size, io.ErrUnexpectedEOF)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	h := make(http.Header, 4)
	whole := off == 0 && n < 0
	var rng string
	switch {
	case whole:
		h["X-Amz-Checksum-Mode"] = []string{"ENABLED"}
	case n < 0:
		rng = "bytes=" + strconv.FormatInt(off, 10) + "-"
	default:
		rng = "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+n-1, 10)
	}
	if rng != "" {
		h["Range"] = []string{rng}
	}
	resp, err := c.do(ctx, &request{method: http.MethodGet, key: c.key(key), header: h, payload: emptySHA256})
	if errCode(err) == "InvalidRange" {
		return nil, fmt.Errorf("range %d+%d past the end of the object: %w", off, n, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return nil, err
	}
	r := &reader{ctx: ctx, key: key, body: resp.Body, want: n}
	if n < 0 {
		r.want = resp.ContentLength // -1 if unknown
	}
	if cr := resp.Header.Get("Content-Range"); rng != "" && !strings.HasPrefix(cr, "bytes "+strconv.FormatInt(off, 10)+"-") {
		resp.Body.Close()
		return nil, fmt.Errorf("asked for %s, got Content-Range %q", rng, cr)
	}
	if whole {
		r.sum, r.source = storedSHA256(resp.Header)
		if r.sum != "" {
			r.h = sha256.New()
		}
	}
	return r, nil
}

// storedSHA256 returns the hex SHA-256 that a whole object read should
// have, and where it comes from: the "sha256" metadata, else the S3
// checksum of a single-part object, else "".
func storedSHA256(h http.Header) (sum, source string) {
	if sum := h.Get("X-Amz-Meta-Sha256"); sum != "" {
		return strings.ToLower(sum), "stored"
	}
	b64 := h.Get("X-Amz-Checksum-Sha256")
	if b64 == "" || strings.EqualFold(h.Get("X-Amz-Checksum-Type"), "COMPOSITE") {
		return "", "" // a checksum of part checksums: not the content's
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != sha256.Size {
		return "", ""
	}
	return hex.EncodeToString(raw), "S3 checksum"
}

// reader reads an object's body, insisting on exactly want bytes and, when h
// is set, checking their SHA-256 against sum at EOF.
type reader struct {
	ctx  context.Context
	key  string
	body io.ReadCloser
	want int64 // bytes expected, or -1 if unknown
	got  int64 // bytes read

	h      hash.Hash // nil: no verification
	sum    string    // hex
	source string    // of sum, for the error message
	err    error     // sticky
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = fmt.Errorf("s3: get %s: %w", r.key, err)
		return 0, r.err
	}
	n, err := r.body.Read(p)
	r.got += int64(n)
	if r.h != nil {
		r.h.Write(p[:n])
	}
	switch {
	case r.want >= 0 && r.got > r.want:
		err = fmt.Errorf("s3: get %s: body longer than %d bytes", r.key, r.want)
	case err == io.EOF && r.want >= 0 && r.got < r.want:
		err = fmt.Errorf("s3: get %s: %d of %d bytes: %w", r.key, r.got, r.want, io.ErrUnexpectedEOF)
	case err == io.EOF && r.h != nil:
		if got := hex.EncodeToString(r.h.Sum(nil)); got != r.sum {
			err = fmt.Errorf("s3: get %s: %w: content sha256 %s, %s %s", r.key, replicate.ErrChecksum, got, r.source, r.sum)
		}
	case err == io.EOF:
	case err != nil && r.ctx.Err() != nil:
		err = fmt.Errorf("s3: get %s: %w", r.key, r.ctx.Err())
	case err != nil:
		err = fmt.Errorf("s3: get %s: %w", r.key, err)
	}
	r.err = err
	return n, err
}

func (r *reader) Close() error {
	if err := r.body.Close(); err != nil {
		return fmt.Errorf("s3: get %s: close: %w", r.key, err)
	}
	return nil
}
