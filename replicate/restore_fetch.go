package replicate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/superfly/ltx"
	"golang.org/x/sync/errgroup"
)

// Objects larger than bigObjectSize are downloaded as parallel range GETs
// of partSize bytes, within the restore's concurrency. Tests lower them.
var (
	bigObjectSize int64 = 32 << 20
	partSize      int64 = 8 << 20
)

// restoreStore is the Storage a restore reads through: it bounds the GET
// bodies open at once to the restore's concurrency (a GET holds its slot
// until its body is closed, so a caller must close one body before it
// opens the next) and counts the GETs and the bytes they returned.
type restoreStore struct {
	Storage
	sem      chan struct{}
	requests atomic.Int64
	bytes    atomic.Int64
}

func newRestoreStore(store Storage, concurrency int) *restoreStore {
	return &restoreStore{Storage: store, sem: make(chan struct{}, concurrency)}
}

// Unwrap returns the Storage below.
func (s *restoreStore) Unwrap() Storage { return s.Storage }

// Get waits for a free slot, then opens key as the Storage below does.
func (s *restoreStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.requests.Add(1)
	rc, err := s.Storage.Get(ctx, key, off, n)
	if err != nil {
		<-s.sem
		return nil, err
	}
	return &countedBody{rc: rc, s: s}, nil
}

// countedBody counts the bytes read and frees its slot when closed.
type countedBody struct {
	rc   io.ReadCloser
	s    *restoreStore
	once sync.Once
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.s.bytes.Add(int64(n))
	return n, err
}

func (b *countedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() { <-b.s.sem })
	return err
}

// fetched is one file of a plan, downloaded into a temporary file and
// verified on its own: SHA-256, header TXIDs equal to the key, agreement
// with its peers, and for all but big objects LTX checksums and pages in
// ascending order (the merge checks these again as it decodes). What
// depends on the files before it is checked by the chain pass and the
// merge.
type fetched struct {
	lf   ltxFile
	path string
	hdr  ltx.Header
	tr   ltx.Trailer
}

// fetcher downloads the files of a plan into dir.
type fetcher struct {
	store       *restoreStore
	files       []ltxFile // the whole listing, for checkPeers
	dir         string
	concurrency int
	nfiles      atomic.Int64 // files downloaded and verified
	written     atomic.Int64 // bytes of plan files downloaded
}

// fetchAll downloads and verifies every file of plan, up to
// f.concurrency at a time, and returns them in plan order. The first
// failure stops the others.
func (f *fetcher) fetchAll(ctx context.Context, plan []ltxFile) ([]fetched, error) {
	out := make([]fetched, len(plan))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.concurrency)
	for i, lf := range plan {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			got, err := f.fetch(gctx, i, lf)
			if err != nil {
				return err
			}
			out[i] = got
			f.nfiles.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// fetch downloads the i-th file of the plan into its temporary file (named
// by its position, never by its key) and verifies it.
func (f *fetcher) fetch(ctx context.Context, i int, lf ltxFile) (fetched, error) {
	got := fetched{lf: lf, path: filepath.Join(f.dir, fmt.Sprintf("%06d.ltx", i))}
	file, err := os.OpenFile(got.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return got, err
	}
	defer file.Close()
	if lf.size > bigObjectSize {
		// The LTX checksums of a big object are verified by the merge,
		// which decodes it anyway: one pass over it instead of two.
		err = f.downloadParts(ctx, file, lf)
		if err == nil {
			got.hdr, got.tr, err = readEnds(file, lf)
		}
	} else {
		// The object is decoded as it arrives; objectReader resumes a
		// failed read and the store verifies the SHA-256 at EOF.
		rc := newObjectReader(ctx, f.store, lf.key, lf.size)
		w := &countingWriter{w: file, n: &f.written, limit: lf.size}
		got.hdr, got.tr, err = verifyLTX(ctx, io.TeeReader(rc, w), lf)
		rc.Close()
	}
	if err != nil {
		return got, err
	}
	if err := checkPeers(ctx, f.store, f.files, lf, got.hdr, got.tr); err != nil {
		return got, err
	}
	return got, nil
}

// verifyLTX reads one LTX file whole: the decoder verifies its checksums,
// frameGuard bounds its page frames, and the reader is drained to EOF (where
// a whole-object GET verifies the SHA-256). It checks what a file must
// satisfy whatever precedes it: header TXIDs equal to the key's and pages
// in ascending order (a merge by page number needs them so, and
// ltx.Encoder writes them so).
func verifyLTX(ctx context.Context, r io.Reader, lf ltxFile) (ltx.Header, ltx.Trailer, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	dec := ltx.NewDecoder(newFrameGuard(br))
	dec.SetRetainPageIndex(false)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("%s: %w", lf.key, err)
	}
	hdr := dec.Header()
	if err := checkHeaderKey(lf, hdr); err != nil {
		return hdr, ltx.Trailer{}, err
	}
	buf := make([]byte, hdr.PageSize)
	var ph ltx.PageHeader
	var prev uint32
	for {
		if err := ctx.Err(); err != nil {
			return hdr, ltx.Trailer{}, err
		}
		err := dec.DecodePage(&ph, buf)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return hdr, ltx.Trailer{}, fmt.Errorf("%s: %w", lf.key, err)
		}
		if ph.Pgno <= prev {
			return hdr, ltx.Trailer{}, fmt.Errorf("%w: %s: page %d after page %d: pages out of order", ErrChainBroken, lf.key, ph.Pgno, prev)
		}
		prev = ph.Pgno
	}
	if err := dec.Close(); err != nil {
		return hdr, ltx.Trailer{}, fmt.Errorf("%s: %w", lf.key, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return hdr, ltx.Trailer{}, fmt.Errorf("%s: %w", lf.key, err)
	}
	return hdr, dec.Trailer(), nil
}

// countingWriter counts the bytes written through it, and refuses more
// than limit, the size the listing gave the object: the temporary disk a
// restore takes is checked against the listing's sizes.
type countingWriter struct {
	w     io.Writer
	n     *atomic.Int64
	limit int64
	done  int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.done+int64(len(p)) > c.limit {
		return 0, fmt.Errorf("object has more than the %d bytes listed", c.limit)
	}
	n, err := c.w.Write(p)
	c.done += int64(n)
	c.n.Add(int64(n))
	return n, err
}

// downloadParts downloads a big object as range GETs of partSize bytes in
// parallel into file and verifies the SHA-256 of the whole file against
// the one stored with the object (range GETs are not verified by the
// store), hashing each part as soon as the parts before it are in. An
// object stored without one is covered by the LTX checksum only, as for a
// resumed read.
func (f *fetcher) downloadParts(ctx context.Context, file *os.File, lf ltxFile) error {
	info, err := f.store.Head(ctx, lf.key)
	if err != nil {
		return fmt.Errorf("%s: %w", lf.key, err)
	}
	if info.Size != lf.size {
		return fmt.Errorf("%s: object has %d bytes, the listing %d", lf.key, info.Size, lf.size)
	}
	nparts := int((lf.size + partSize - 1) / partSize)
	in := make([]chan struct{}, nparts)
	for i := range in {
		in[i] = make(chan struct{})
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	hashed := make(chan hashResult, 1)
	go func() { hashed <- hashParts(hctx, file, lf.size, in) }()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.concurrency)
	for i := range nparts {
		if gctx.Err() != nil {
			break
		}
		off := int64(i) * partSize
		n := min(partSize, lf.size-off)
		g.Go(func() error {
			if err := f.downloadPart(gctx, file, lf.key, off, n); err != nil {
				return err
			}
			close(in[i])
			return nil
		})
	}
	err = g.Wait()
	if err != nil {
		hcancel()
	}
	h := <-hashed
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && h.err != nil {
		err = fmt.Errorf("%s: %w", lf.key, h.err)
	}
	if err != nil {
		return err
	}
	if want, ok := info.Metadata[MetaSHA256]; ok && h.sum != want {
		return fmt.Errorf("%s: %w (ranged read: sha256 %s, stored %s)", lf.key, ErrChecksum, h.sum, want)
	}
	return nil
}

type hashResult struct {
	sum string
	err error
}

// hashParts returns the SHA-256 of the size bytes of file, reading each
// part once in[i] is closed. It stops when ctx is done.
func hashParts(ctx context.Context, file *os.File, size int64, in []chan struct{}) hashResult {
	h := sha256.New()
	buf := make([]byte, min(partWriteBuffer, max(size, 512)))
	for i, ch := range in {
		select {
		case <-ch:
		case <-ctx.Done():
			return hashResult{err: ctx.Err()}
		}
		off := int64(i) * partSize
		if _, err := io.CopyBuffer(h, io.NewSectionReader(file, off, min(partSize, size-off)), buf); err != nil {
			return hashResult{err: err}
		}
	}
	return hashResult{sum: hex.EncodeToString(h.Sum(nil))}
}

// readEnds reads the header and the trailer of a downloaded file. They
// are not verified yet (the merge verifies the file checksum, which
// covers both): the header only steers the chain checks, which refuse or
// pass a file before any of it is applied, and the trailer is compared.
func readEnds(file *os.File, lf ltxFile) (ltx.Header, ltx.Trailer, error) {
	var hdr ltx.Header
	var tr ltx.Trailer
	b := make([]byte, max(ltx.HeaderSize, ltx.TrailerSize))
	if lf.size < ltx.HeaderSize+ltx.TrailerSize {
		return hdr, tr, fmt.Errorf("%s: %d bytes is too short for an LTX file", lf.key, lf.size)
	}
	if _, err := file.ReadAt(b[:ltx.HeaderSize], 0); err != nil {
		return hdr, tr, fmt.Errorf("%s: %w", lf.key, err)
	}
	if err := hdr.UnmarshalBinary(b[:ltx.HeaderSize]); err != nil {
		return hdr, tr, fmt.Errorf("%s: %w", lf.key, err)
	}
	if err := hdr.Validate(); err != nil {
		return hdr, tr, fmt.Errorf("%s: %w", lf.key, err)
	}
	if err := checkHeaderKey(lf, hdr); err != nil {
		return hdr, tr, err
	}
	if _, err := file.ReadAt(b[:ltx.TrailerSize], lf.size-ltx.TrailerSize); err != nil {
		return hdr, tr, fmt.Errorf("%s: %w", lf.key, err)
	}
	if err := tr.UnmarshalBinary(b[:ltx.TrailerSize]); err != nil {
		return hdr, tr, fmt.Errorf("%s: %w", lf.key, err)
	}
	return hdr, tr, nil
}

// downloadPart copies bytes off..off+n of key into file at the same
// offset, resuming a failed read where it stopped, up to getRetry.attempts
// times.
// partWriteBuffer is the buffer of each ranged part's writes, and of the
// hash's reads of the parts.
const partWriteBuffer = 256 << 10

func (f *fetcher) downloadPart(ctx context.Context, file *os.File, key string, off, n int64) error {
	var done int64
	for retries := 0; ; retries++ {
		rc, err := f.store.Get(ctx, key, off+done, n-done)
		if err == nil {
			var w int64
			// Coalesce the body's reads into large writes: a network read
			// returns a few KiB, a pwrite each would cost more than the copy.
			bw := bufio.NewWriterSize(io.NewOffsetWriter(file, off+done), int(min(partWriteBuffer, max(n-done, 16))))
			w, err = io.Copy(bw, io.LimitReader(rc, n-done))
			if ferr := bw.Flush(); err == nil {
				err = ferr
			}
			w -= int64(bw.Buffered())
			rc.Close()
			done += w
			f.written.Add(w)
			if err == nil && done == n {
				return nil
			} else if err == nil {
				err = io.ErrUnexpectedEOF
			}
		}
		if ctx.Err() != nil || errors.Is(err, ErrNotExist) || errors.Is(err, context.Canceled) ||
			errors.Is(err, context.DeadlineExceeded) || retries >= getRetry.attempts {
			return fmt.Errorf("%s: bytes %d-%d: %w", key, off, off+n-1, err)
		}
		if werr := getRetry.wait(ctx, retries); werr != nil {
			return werr
		}
	}
}
