package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// abortTimeout bounds the AbortMultipartUpload sent after a failure, which
// runs even when the Put's context is canceled.
const abortTimeout = 30 * time.Second

// partSizeFor returns the part size of an object of size bytes: the
// client's, or more when MaxParts parts of it would not hold the object
// (rounded up to a MiB).
func (c *Client) partSizeFor(size int64) int64 {
	ps := c.partSize
	if size > ps*MaxParts {
		ps = ((size+MaxParts-1)/MaxParts + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

// hashParts rewinds r and returns the SHA-256 of its first size bytes and
// those of each of its parts of partSize bytes (the last one shorter), in
// one pass, failing if r holds fewer.
func hashParts(ctx context.Context, r io.ReadSeeker, size, partSize int64) (sum [sha256.Size]byte, parts [][sha256.Size]byte, err error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return sum, nil, fmt.Errorf("rewind content: %w", err)
	}
	hs := hashers.Get().(*hasher)
	defer hashers.Put(hs)
	hs.h.Reset()
	ph := sha256.New()
	parts = make([][sha256.Size]byte, 0, (size+partSize-1)/partSize)
	for off := int64(0); off < size; off += partSize {
		n := min(partSize, size-off)
		ph.Reset()
		got, err := io.CopyBuffer(io.MultiWriter(hs.h, ph), io.LimitReader(ctxReader{ctx, r}, n), hs.buf)
		if err != nil {
			return sum, nil, fmt.Errorf("read content: %w", err)
		}
		if got < n {
			return sum, nil, fmt.Errorf("read %d of %d bytes: %w", off+got, size, io.ErrUnexpectedEOF)
		}
		parts = append(parts, [sha256.Size]byte(ph.Sum(nil)))
	}
	hs.h.Sum(sum[:0])
	return sum, parts, nil
}

// putMultipart stores the size bytes of r under key in parts, as Put does
// in one request for smaller objects: h holds the metadata headers, hexSum
// the content's SHA-256, parts the SHA-256 of each part of partSize bytes.
// Any failure, ctx canceled included, aborts the upload.
func (c *Client) putMultipart(ctx context.Context, key string, r io.ReadSeeker, size, partSize int64, h http.Header, hexSum string, parts [][sha256.Size]byte) error {
	// Look first: a large object already stored need not be sent again.
	switch err := c.sameContent(ctx, key, hexSum, size); {
	case err == nil:
		return nil
	case !isNotFound(err):
		return err
	}
	id, err := c.createUpload(ctx, key, h)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			if aerr := c.abortUpload(ctx, key, id); aerr != nil {
				err = fmt.Errorf("%w; %w", err, aerr)
			}
		}
	}()
	etags := make([]string, len(parts))
	for i := range parts {
		off := int64(i) * partSize
		etags[i], err = c.uploadPart(ctx, key, id, i+1, offsetSeeker{r, off}, min(partSize, size-off), parts[i])
		if err != nil {
			return fmt.Errorf("part %d of %d: %w", i+1, len(parts), err)
		}
	}
	done, err = c.completeUpload(ctx, key, id, hexSum, size, etags, parts)
	return err
}

// createUpload starts a multipart upload of key with the headers h, and
// returns its ID. Parts carry SHA-256 checksums.
func (c *Client) createUpload(ctx context.Context, key string, h http.Header) (string, error) {
	h = h.Clone()
	h["X-Amz-Checksum-Algorithm"] = []string{"SHA256"}
	resp, err := c.do(ctx, &request{method: http.MethodPost, key: c.key(key), query: "uploads=", header: h, payload: emptySHA256, buffer: true})
	if err != nil {
		return "", fmt.Errorf("create multipart upload: %w", err)
	}
	defer resp.Body.Close()
	var out struct{ UploadId string }
	if err := xml.NewDecoder(resp.Body).Decode(&out); err != nil || out.UploadId == "" {
		return "", fmt.Errorf("CreateMultipartUpload response: no UploadId (%v)", err)
	}
	return out.UploadId, nil
}

// uploadQuery returns the query of a request on upload id, and on part
// number part if part > 0.
func uploadQuery(id string, part int) string {
	q := url.Values{"uploadId": {id}}
	if part > 0 {
		q.Set("partNumber", strconv.Itoa(part))
	}
	return q.Encode()
}

// uploadPart sends part number part, n bytes of r, whose SHA-256 is sum,
// and returns its ETag. The server verifies the checksum.
func (c *Client) uploadPart(ctx context.Context, key, id string, part int, r io.ReadSeeker, n int64, sum [sha256.Size]byte) (string, error) {
	h := http.Header{"X-Amz-Checksum-Sha256": {base64.StdEncoding.EncodeToString(sum[:])}}
	resp, err := c.do(ctx, &request{
		method: http.MethodPut, key: c.key(key), query: uploadQuery(id, part), header: h,
		body: r, size: n, payload: hex.EncodeToString(sum[:]),
	})
	if err != nil {
		return "", err
	}
	discard(resp)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		return "", errors.New("UploadPart response without ETag")
	}
	return etag, nil
}

// completePart is a part in a CompleteMultipartUpload request.
type completePart struct {
	PartNumber     int
	ETag           string
	ChecksumSHA256 string
}

// completeUpload completes upload id of key with If-None-Match: *, so that
// an existing key is never overwritten. It reports whether the upload is
// over (completed by this call), and returns nil if key ends up holding
// the content (SHA-256 hexSum, size bytes): completed now, by an earlier
// attempt whose answer was lost, or by another writer of the same content.
func (c *Client) completeUpload(ctx context.Context, key, id, hexSum string, size int64, etags []string, sums [][sha256.Size]byte) (bool, error) {
	var b bytes.Buffer
	b.WriteString(`<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`)
	enc := xml.NewEncoder(&b)
	for i, etag := range etags {
		p := completePart{PartNumber: i + 1, ETag: etag, ChecksumSHA256: base64.StdEncoding.EncodeToString(sums[i][:])}
		if err := enc.EncodeElement(p, xml.StartElement{Name: xml.Name{Local: "Part"}}); err != nil {
			return false, err
		}
	}
	enc.Flush()
	b.WriteString(`</CompleteMultipartUpload>`)
	sha := sha256.Sum256(b.Bytes())
	h := http.Header{"If-None-Match": {"*"}, "Content-Type": {"application/xml"}}
	resp, err := c.do(ctx, &request{
		method: http.MethodPost, key: c.key(key), query: uploadQuery(id, 0), header: h,
		body: bytes.NewReader(b.Bytes()), size: int64(b.Len()), payload: hex.EncodeToString(sha[:]),
		buffer: true,
		// An attempt whose answer was lost may have completed the upload.
		settled: func(ctx context.Context) error {
			err := c.sameContent(ctx, key, hexSum, size)
			switch {
			case err == nil:
				return errSettled
			case isNotFound(err):
				return nil
			}
			return err
		},
	})
	if errors.Is(err, errSettled) {
		return false, nil // abort what may be left: NoSuchUpload if completed
	}
	if err == nil {
		// S3 can answer 200 with an error in the body.
		defer resp.Body.Close()
		var out struct {
			XMLName       xml.Name
			Code, Message string
		}
		if err := xml.NewDecoder(resp.Body).Decode(&out); err != nil {
			return false, fmt.Errorf("CompleteMultipartUpload response: %w", err)
		}
		if out.XMLName.Local == "Error" {
			return false, fmt.Errorf("complete multipart upload: %w", &apiError{status: resp.StatusCode, code: out.Code, message: out.Message})
		}
		return true, nil
	}
	var ae *apiError
	if errors.As(err, &ae) && (ae.status == http.StatusPreconditionFailed || ae.code == "PreconditionFailed" ||
		ae.code == "ConditionalRequestConflict" || ae.code == "NoSuchUpload") {
		// Key exists, or an earlier attempt completed this upload.
		err := c.sameContent(ctx, key, hexSum, size)
		if isNotFound(err) {
			return false, fmt.Errorf("complete multipart upload refused (%s), but the object is gone (deleted concurrently?)", ae.code)
		}
		return false, err
	}
	return false, fmt.Errorf("complete multipart upload: %w", err)
}

// abortUpload aborts upload id of key, even if ctx is canceled. An upload
// already completed or aborted (NoSuchUpload) is not an error.
func (c *Client) abortUpload(ctx context.Context, key, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	resp, err := c.do(ctx, &request{method: http.MethodDelete, key: c.key(key), query: uploadQuery(id, 0), payload: emptySHA256})
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("abort multipart upload: %w", err)
	}
	discard(resp)
	return nil
}

// offsetSeeker is r from offset off on: Seek(0, io.SeekStart) goes to off.
// Reads are bounded by the request body that reads it.
type offsetSeeker struct {
	r   io.ReadSeeker
	off int64
}

func (o offsetSeeker) Read(p []byte) (int, error) { return o.r.Read(p) }

func (o offsetSeeker) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekStart {
		return 0, errors.New("offsetSeeker: only io.SeekStart")
	}
	n, err := o.r.Seek(o.off+offset, io.SeekStart)
	return n - o.off, err
}
