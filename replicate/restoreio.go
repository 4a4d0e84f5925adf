package replicate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// retryPolicy bounds the retries of a restore's reads.
type retryPolicy struct {
	attempts int           // retries of one object after its first attempt
	base     time.Duration // first wait, doubled at each retry
	max      time.Duration // longest wait
}

// getRetry is the retry policy of restore downloads. Tests set the waits
// to zero.
var getRetry = retryPolicy{attempts: 5, base: 250 * time.Millisecond, max: 8 * time.Second}

// wait sleeps before retry i (0-based), or returns the context's error.
func (p retryPolicy) wait(ctx context.Context, i int) error {
	d := p.base << min(i, 16)
	if d > p.max || d < 0 {
		d = p.max
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// objectReader reads one object whole. A read that fails mid-body (a reset,
// a timeout) is resumed from where it stopped with a range GET, up to
// getRetry.attempts times with backoff. A range GET is not verified by the
// store, so objectReader keeps its own SHA-256 of every byte and, once it
// has resumed, compares it at the end with the SHA-256 stored with the
// object. A checksum mismatch, a missing object and a cancelled context are
// never retried.
type objectReader struct {
	ctx     context.Context
	store   Storage
	key     string
	size    int64 // from the listing
	off     int64
	rc      io.ReadCloser
	sum     hash.Hash
	resumed bool
	retries int
}

func newObjectReader(ctx context.Context, store Storage, key string, size int64) *objectReader {
	return &objectReader{ctx: ctx, store: store, key: key, size: size, sum: sha256.New()}
}

// retryable reports whether a read error may be retried.
func (r *objectReader) retryable(err error) bool {
	return r.ctx.Err() == nil && !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrNotExist) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		r.retries < getRetry.attempts
}

// retry closes the current body and waits before the next attempt.
func (r *objectReader) retry() error {
	if r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
	if r.off > 0 {
		r.resumed = true
	}
	err := getRetry.wait(r.ctx, r.retries)
	r.retries++
	return err
}

func (r *objectReader) open() (err error) {
	if !r.resumed {
		r.rc, err = r.store.Get(r.ctx, r.key, 0, -1)
		return err
	}
	if r.off >= r.size {
		return fmt.Errorf("resume %s at byte %d: object has %d bytes", r.key, r.off, r.size)
	}
	r.rc, err = r.store.Get(r.ctx, r.key, r.off, r.size-r.off)
	return err
}

func (r *objectReader) Read(p []byte) (int, error) {
	for {
		if r.rc == nil {
			if err := r.open(); err != nil {
				if !r.retryable(err) {
					return 0, err
				}
				if werr := r.retry(); werr != nil {
					return 0, werr
				}
				continue
			}
		}
		n, err := r.rc.Read(p)
		r.sum.Write(p[:n])
		r.off += int64(n)
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && r.resumed:
			if r.off != r.size {
				return n, fmt.Errorf("%s: read %d bytes, object has %d", r.key, r.off, r.size)
			}
			if verr := r.verify(); verr != nil {
				return n, verr
			}
			return n, io.EOF
		case errors.Is(err, io.EOF) || !r.retryable(err):
			return n, err
		}
		if werr := r.retry(); werr != nil {
			return n, werr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// verify compares the SHA-256 of the bytes read with the one stored with
// the object. An object stored without one (written by another tool) is
// covered by the LTX file checksum only, as a whole GET of it would be.
func (r *objectReader) verify() error {
	info, err := r.store.Head(r.ctx, r.key)
	if err != nil {
		return err
	}
	want, ok := info.Metadata[MetaSHA256]
	if !ok {
		return nil
	}
	if got := hex.EncodeToString(r.sum.Sum(nil)); got != want {
		return fmt.Errorf("%s: %w (resumed read: sha256 %s, stored %s)", r.key, ErrChecksum, got, want)
	}
	return nil
}

// Close closes the current body.
func (r *objectReader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}

// frameGuard parses the page frames of an LTX stream as they pass to the
// decoder and fails the read that carries a compressed size larger than a
// page can compress to, before the decoder allocates a buffer of that size
// (ltx.Decoder trusts the 32-bit size field). It withholds the last byte of
// a bad field, so the decoder's io.ReadFull sees the error.
type frameGuard struct {
	r        io.Reader
	field    [ltx.HeaderSize]byte
	need     int   // bytes of the current field still to come
	have     int   // bytes of the current field seen
	state    int   // what the current field is
	skip     int64 // bytes of compressed data to pass
	maxBlock uint32
}

const (
	guardHeader = iota
	guardPageHeader
	guardSize
	guardDone // page block over (or an old-format frame): nothing more to guard
)

func newFrameGuard(r io.Reader) *frameGuard {
	return &frameGuard{r: r, need: ltx.HeaderSize, state: guardHeader}
}

func (g *frameGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	for i := 0; i < n && g.state != guardDone; {
		if g.skip > 0 {
			k := min(int64(n-i), g.skip)
			g.skip -= k
			i += int(k)
			continue
		}
		g.field[g.have] = p[i]
		g.have++
		g.need--
		i++
		if g.need > 0 {
			continue
		}
		if ferr := g.endField(); ferr != nil {
			return i - 1, ferr
		}
	}
	return n, err
}

// endField acts on a complete field and sets up the next one.
func (g *frameGuard) endField() error {
	b := g.field[:g.have]
	g.have = 0
	switch g.state {
	case guardHeader:
		pageSize := binary.BigEndian.Uint32(b[8:12])
		if !ltx.IsValidPageSize(pageSize) {
			g.state = guardDone // the decoder refuses the header
			return nil
		}
		g.maxBlock = uint32(lz4.CompressBlockBound(int(pageSize)))
		g.state, g.need = guardPageHeader, ltx.PageHeaderSize
	case guardPageHeader:
		flags := binary.BigEndian.Uint16(b[4:6])
		switch {
		case binary.BigEndian.Uint32(b[0:4]) == 0 && flags == 0:
			g.state = guardDone
		case flags&ltx.PageHeaderFlagSize == 0:
			g.state = guardDone // old format: an LZ4 frame, bounded by the page size
		default:
			g.state, g.need = guardSize, 4
		}
	case guardSize:
		size := binary.BigEndian.Uint32(b)
		if size > g.maxBlock {
			return fmt.Errorf("page frame of %d compressed bytes exceeds the %d a page can take", size, g.maxBlock)
		}
		g.skip = int64(size)
		g.state, g.need = guardPageHeader, ltx.PageHeaderSize
	}
	return nil
}
