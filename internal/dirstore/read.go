package dirstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/walsync/walsync/replicate"
)

// Get opens key for reading n bytes from offset off, or to the end if n < 0.
// A whole-object read (off 0, n < 0) verifies the SHA-256 stored by Put at
// EOF; a range that runs past the end of the object is an error matching
// [io.ErrUnexpectedEOF]. A missing key is an error matching
// [replicate.ErrNotExist].
func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.get(ctx, key, off, n)
	if err != nil {
		return nil, fmt.Errorf("dirstore: get %s: %w", key, err)
	}
	return rc, nil
}

func (s *Store) get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("negative offset %d", off)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	verify := off == 0 && n < 0
	f, size, want, err := s.open(path(key), verify)
	if err != nil {
		return nil, err
	}

	if off > size || (n >= 0 && n > size-off) {
		f.Close()
		return nil, fmt.Errorf("range %d+%d past the end of %d bytes: %w", off, n, size, io.ErrUnexpectedEOF)
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	want64 := size - off
	if n >= 0 {
		want64 = n
	}
	r := &reader{ctx: ctx, key: key, f: f, r: io.LimitReader(f, want64), left: want64}
	if verify && want != "" {
		r.h, r.want = sha256.New(), want
	}
	return r, nil
}

// open opens the data file and, if verify is set, reads the stored SHA-256
// ("" if none was stored).
func (s *Store) open(name string, verify bool) (f *os.File, size int64, want string, err error) {
	f, err = s.root.Open(name)
	if notExist(err) {
		return nil, 0, "", replicate.ErrNotExist
	}
	if err != nil {
		return nil, 0, "", err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, "", err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, "", replicate.ErrNotExist
	}
	if verify {
		m, err := getMeta(f)
		if err != nil {
			f.Close()
			return nil, 0, "", err
		}
		want = m[replicate.MetaSHA256]
	}
	return f, fi.Size(), want, nil
}

// reader reads an object's bytes, insisting on exactly left more of them and,
// when h is set, checking their SHA-256 against want at EOF.
type reader struct {
	ctx  context.Context
	key  string
	f    *os.File
	r    io.Reader
	left int64

	h    hash.Hash // nil: no verification
	want string
	err  error // sticky
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("dirstore: get %s: %w", r.key, err)
	}
	n, err := r.r.Read(p)
	r.left -= int64(n)
	if r.h != nil {
		r.h.Write(p[:n])
	}
	switch {
	case err == io.EOF && r.left > 0:
		err = fmt.Errorf("dirstore: get %s: %d bytes missing: %w", r.key, r.left, io.ErrUnexpectedEOF)
	case err == io.EOF && r.h != nil:
		if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want {
			err = fmt.Errorf("dirstore: get %s: %w: content sha256 %s, stored %s", r.key, replicate.ErrChecksum, got, r.want)
		}
	case err != nil && err != io.EOF:
		err = fmt.Errorf("dirstore: get %s: %w", r.key, err)
	}
	r.err = err
	return n, err
}

func (r *reader) Close() error {
	if err := r.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("dirstore: get %s: close: %w", r.key, err)
	}
	return nil
}

// Head returns the size, modification time and metadata of key, or an error
// matching [replicate.ErrNotExist].
func (s *Store) Head(ctx context.Context, key string) (replicate.ObjectInfo, error) {
	info, err := s.head(ctx, key)
	if err != nil {
		return replicate.ObjectInfo{}, fmt.Errorf("dirstore: head %s: %w", key, err)
	}
	return info, nil
}

func (s *Store) head(ctx context.Context, key string) (replicate.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return replicate.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return replicate.ObjectInfo{}, err
	}
	f, size, _, err := s.open(path(key), false)
	if err != nil {
		return replicate.ObjectInfo{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return replicate.ObjectInfo{}, err
	}
	m, err := getMeta(f)
	if err != nil {
		return replicate.ObjectInfo{}, err
	}
	return replicate.ObjectInfo{Key: key, Size: size, ModTime: fi.ModTime(), Metadata: m}, nil
}
