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
// [replicate.ErrNotExist].
//
// A read that fails mid-body (a reset, a stall past Config.IdleTimeout, a
// body cut short) resumes: the reader asks for the rest of the range with
// If-Match on the object's ETag, up to Config.MaxAttempts times in a row
// without progress, and the SHA-256 check covers every byte read. An
// object replaced meanwhile fails the read.
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
	r := &reader{ctx: ctx, c: c, key: key, body: resp.Body, want: n, off: off, etag: resp.Header.Get("ETag")}
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
	c    *Client
	key  string
	body io.ReadCloser
	want int64 // bytes expected, or -1 if unknown
	got  int64 // bytes read
	off  int64 // offset of the first byte in the object

	etag     string // of the object read, for resuming; "": no resuming
	failures int    // in a row, without a byte read in between

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
	if n > 0 {
		r.failures = 0
	}
	if r.want >= 0 && r.got == r.want && err != nil && err != io.EOF {
		err = io.EOF // all there: the connection failed after the body
	}
	if r.resumable(err) {
		err = r.resume(err)
		if err == nil && n == 0 {
			return r.Read(p)
		}
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

// resumable reports whether the read failed with err can go on with a new
// request for the rest of the range.
func (r *reader) resumable(err error) bool {
	switch {
	case err == nil, r.etag == "", r.ctx.Err() != nil:
		return false
	case err == io.EOF:
		return r.want >= 0 && r.got < r.want // cut short
	}
	return true
}

// resume replaces the body of a read that failed with cause by the rest of
// the range, after a backoff, and returns nil; or returns the error that
// ends the read.
func (r *reader) resume(cause error) error {
	r.failures++
	if r.failures >= r.c.attempts {
		return cause
	}
	r.body.Close()
	r.body = http.NoBody
	if err := sleep(r.ctx, backoff(r.failures)); err != nil {
		return err
	}
	from := r.off + r.got
	rng := "bytes=" + strconv.FormatInt(from, 10) + "-"
	if r.want >= 0 {
		rng += strconv.FormatInt(r.off+r.want-1, 10)
	}
	h := http.Header{"Range": {rng}, "If-Match": {r.etag}}
	resp, err := r.c.do(r.ctx, &request{method: http.MethodGet, key: r.c.key(r.key), header: h, payload: emptySHA256})
	if err != nil {
		if errCode(err) == "PreconditionFailed" {
			return fmt.Errorf("resume at byte %d: object replaced during the read (ETag no longer %s): %w", from, r.etag, err)
		}
		return fmt.Errorf("resume at byte %d after %w: %w", from, cause, err)
	}
	if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, "bytes "+strconv.FormatInt(from, 10)+"-") {
		resp.Body.Close()
		return fmt.Errorf("resume: asked for %s, got Content-Range %q", rng, cr)
	}
	r.body = resp.Body
	return nil
}

func (r *reader) Close() error {
	if err := r.body.Close(); err != nil {
		return fmt.Errorf("s3: get %s: close: %w", r.key, err)
	}
	return nil
}
