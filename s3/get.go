package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/walsync/walsync/replicate"
)

// Get opens key for reading n bytes from offset off, or to the end if n < 0.
//
// A whole-object read (off 0, n < 0) verifies the content at EOF against
// the "sha256" metadata and, if the object has one, its S3 checksum; a
// mismatch is an error matching [replicate.ErrChecksum]. A range that runs
// past the end of the object is an error matching [io.ErrUnexpectedEOF],
// from Get or from the reader, as is a body that ends early. A missing key
// is an error matching [replicate.ErrNotExist]. Reads are not retried: a
// failed read is for the caller to retry.
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
	in := &s3api.GetObjectInput{Bucket: &c.bucket, Key: c.key(key)}
	whole := off == 0 && n < 0
	switch {
	case whole:
		in.ChecksumMode = types.ChecksumModeEnabled
	case n < 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	default:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	}
	out, err := c.api.GetObject(ctx, in)
	if errCode(err) == "InvalidRange" {
		return nil, fmt.Errorf("range %d+%d past the end of the object: %w", off, n, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return nil, err
	}
	r := &reader{ctx: ctx, key: key, body: out.Body, want: -1}
	if n >= 0 {
		r.want = n
	} else if out.ContentLength != nil {
		r.want = *out.ContentLength
	}
	if in.Range != nil && !strings.HasPrefix(aws.ToString(out.ContentRange), fmt.Sprintf("bytes %d-", off)) {
		out.Body.Close()
		return nil, fmt.Errorf("asked for %s, got Content-Range %q", *in.Range, aws.ToString(out.ContentRange))
	}
	if whole {
		if sum := lowerKeys(out.Metadata)[replicate.MetaSHA256]; sum != "" {
			r.h, r.sum = sha256.New(), sum
		}
	}
	return r, nil
}

// reader reads an object's body, insisting on exactly want bytes and, when h
// is set, checking their SHA-256 against sum at EOF.
type reader struct {
	ctx  context.Context
	key  string
	body io.ReadCloser
	want int64 // bytes expected, or -1 if unknown
	got  int64 // bytes read

	h   hash.Hash // nil: no verification
	sum string
	err error // sticky
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("s3: get %s: %w", r.key, err)
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
			err = fmt.Errorf("s3: get %s: %w: content sha256 %s, stored %s", r.key, replicate.ErrChecksum, got, r.sum)
		}
	case err == io.EOF:
	case err != nil && r.ctx.Err() != nil:
		err = fmt.Errorf("s3: get %s: %w", r.key, r.ctx.Err())
	case err != nil && strings.Contains(err.Error(), "checksum did not match"):
		// The SDK's S3 checksum validation; its error type is unexported.
		err = fmt.Errorf("s3: get %s: %w: %w", r.key, replicate.ErrChecksum, err)
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
