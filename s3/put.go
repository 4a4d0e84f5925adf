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
	"sync"

	"github.com/walsync/walsync/replicate"
)

// Put stores size bytes read from the start of r under key, with meta plus
// the content's SHA-256 in [replicate.MetaSHA256] (replacing any value the
// caller passed). It reads r once to hash it, then sends it in one
// conditional PutObject (If-None-Match: *) with the SHA-256 as the signed
// payload hash and the S3 checksum, rewinding r for each retry. When the key
// exists (HTTP 412, also on a retry after an attempt that the server did
// store), Put compares SHA-256s: equal is success, different is an error
// matching [replicate.ErrExists].
//
// Objects larger than Config.PartSize go up in a multipart upload instead:
// the first read of r also hashes each part, each part is sent straight
// from r (seeking to it) with its SHA-256 as the payload hash and the S3
// checksum, and CompleteMultipartUpload is conditional (If-None-Match: *)
// too. A key that already holds the content is found before any part is
// sent. Any failure, ctx canceled included, aborts the upload. Objects
// over [MaxObjectSize] are refused.
func (c *Client) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	return c.wrap(ctx, "put", key, c.put(ctx, key, r, size, meta))
}

func (c *Client) put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if size < 0 || size > MaxObjectSize {
		return fmt.Errorf("size %d outside 0..%d", size, int64(MaxObjectSize))
	}
	if err := checkMeta(meta); err != nil {
		return err
	}
	h := make(http.Header, len(meta)+4)
	for k, v := range meta {
		if k != replicate.MetaSHA256 {
			h.Set(metaHeader+k, v)
		}
	}
	if size > c.partSize {
		partSize := c.partSizeFor(size)
		sum, parts, err := hashParts(ctx, r, size, partSize)
		if err != nil {
			return err
		}
		hexSum := hex.EncodeToString(sum[:])
		h["X-Amz-Meta-Sha256"] = []string{hexSum}
		return c.putMultipart(ctx, key, r, size, partSize, h, hexSum, parts)
	}
	var sum [sha256.Size]byte
	if err := hashContent(ctx, r, size, &sum); err != nil {
		return err
	}
	hexSum := hex.EncodeToString(sum[:])
	h["X-Amz-Meta-Sha256"] = []string{hexSum}
	h["X-Amz-Checksum-Sha256"] = []string{base64.StdEncoding.EncodeToString(sum[:])}
	h["If-None-Match"] = []string{"*"}
	if size > continueThreshold {
		// Let the server refuse (key exists, access denied) before the
		// body is sent.
		h["Expect"] = []string{"100-continue"}
	}
	resp, err := c.do(ctx, &request{
		method: http.MethodPut, key: c.key(key), header: h,
		body: r, size: size, payload: hexSum,
		// An attempt that failed on the network may have been stored (the
		// answer was lost). The retry would then be refused, and a server
		// that refuses before reading the body resets the connection, so
		// the refusal can be lost too: look before sending it again.
		settled: func(ctx context.Context) error {
			err := c.sameContent(ctx, key, hexSum, size)
			switch {
			case err == nil:
				return errSettled
			case isNotFound(err):
				return nil // not stored: send it again
			}
			return err
		},
	})
	if errors.Is(err, errSettled) {
		return nil
	}
	if err == nil {
		discard(resp)
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) && (ae.status == http.StatusPreconditionFailed ||
		ae.code == "PreconditionFailed" || ae.code == "ConditionalRequestConflict") {
		err := c.sameContent(ctx, key, hexSum, size)
		if isNotFound(err) {
			return errors.New("conditional put refused, but the object is gone (deleted concurrently?)")
		}
		return err
	}
	return err
}

// continueThreshold is the size above which Put asks the server whether
// it will take the object before sending it (Expect: 100-continue), as the
// SDK does.
const continueThreshold = 2 << 20

// hasher is a SHA-256 and a copy buffer, pooled: each Put needs both once.
type hasher struct {
	h   hash.Hash
	buf []byte
}

var hashers = sync.Pool{New: func() any {
	return &hasher{h: sha256.New(), buf: make([]byte, 32<<10)}
}}

// hashContent rewinds r and sets sum to the SHA-256 of its first size
// bytes, failing if r holds fewer.
func hashContent(ctx context.Context, r io.ReadSeeker, size int64, sum *[sha256.Size]byte) error {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind content: %w", err)
	}
	hs := hashers.Get().(*hasher)
	defer hashers.Put(hs)
	hs.h.Reset()
	n, err := io.CopyBuffer(hs.h, io.LimitReader(ctxReader{ctx, r}, size), hs.buf)
	if err != nil {
		return fmt.Errorf("read content: %w", err)
	}
	if n < size {
		return fmt.Errorf("read %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	hs.h.Sum(sum[:0])
	return nil
}

// sameContent decides a Put refused because key exists: nil if the stored
// object has the SHA-256 hexSum, else an error matching
// [replicate.ErrExists]. An object without "sha256" metadata is hashed.
func (c *Client) sameContent(ctx context.Context, key, hexSum string, size int64) error {
	info, err := c.head(ctx, key)
	if err != nil {
		return err
	}
	if info.Size != size {
		return fmt.Errorf("%w: stored size %d, new size %d", replicate.ErrExists, info.Size, size)
	}
	stored := info.Metadata[replicate.MetaSHA256]
	if stored == "" {
		if stored, err = c.hashObject(ctx, key); err != nil {
			return err
		}
	}
	if stored != hexSum {
		return fmt.Errorf("%w: stored sha256 %s, new sha256 %s", replicate.ErrExists, stored, hexSum)
	}
	return nil
}

// hashObject returns the hex SHA-256 of the content stored under key.
func (c *Client) hashObject(ctx context.Context, key string) (string, error) {
	rc, err := c.get(ctx, key, 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
