// Package memstore is an in-memory [objstore.Storage] for tests: the
// engine's unit tests use it where a real backend (internal/dirstore, or s3
// against the test server) would only add I/O. It passes the same contract
// suite as the real backends (internal/storagetest), and counts the Puts
// and Lists it served so that tests can assert on the requests a change
// costs.
//
// Usage:
//
//	store := memstore.New()
//	r := replicate.New(store, replicate.Options{})
//	...
//	keys := store.Keys("app.db/")
//
// Caveats: everything is held in memory, and the verifying whole-object read
// is cheap, so it is not a model for performance.
package memstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/walsync/walsync/internal/objstore"
)

var _ objstore.KeyChecker = (*Store)(nil)

// Store is an in-memory [objstore.Storage]. It is safe for concurrent use by
// multiple goroutines. The zero value is not usable; call [New].
type Store struct {
	mu    sync.Mutex
	objs  map[string]object // +checklocks:mu
	puts  int               // +checklocks:mu
	lists int               // +checklocks:mu
}

// object is one stored object. Its data is never modified once stored (a
// test may replace it with a corrupted copy).
type object struct {
	data []byte
	meta map[string]string // includes objstore.MetaSHA256
	mod  time.Time
}

// New returns an empty Store.
func New() *Store { return &Store{objs: make(map[string]object)} }

// Puts returns the number of objects Put has stored (a Put of content the
// key already holds stores nothing and is not counted).
func (s *Store) Puts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

// Lists returns the number of List iterations started.
func (s *Store) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

// Keys returns the stored keys that start with prefix, sorted.
func (s *Store) Keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Put stores size bytes read from the start of r under key, as
// [objstore.Storage] specifies: it refuses different content under an
// existing key with an error matching [objstore.ErrExists], accepts the
// same content again, and refuses metadata whose keys are not lower-case
// letters, digits, '-' or '_' or whose values are not printable ASCII, and
// keys [Store.CheckKey] refuses.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: put %s: %w", key, err)
	}
	if err := s.CheckKey(key); err != nil {
		return fmt.Errorf("memstore: put: %w", err)
	}
	if err := checkMeta(meta); err != nil {
		return fmt.Errorf("memstore: put %s: %w", key, err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("memstore: put %s: %w", key, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("memstore: put %s: %w", key, err)
	}
	if int64(len(b)) != size {
		return fmt.Errorf("memstore: put %s: size %d, read %d bytes", key, size, len(b))
	}
	sum := sha256.Sum256(b)
	mt := maps.Clone(meta)
	if mt == nil {
		mt = make(map[string]string, 1)
	}
	mt[objstore.MetaSHA256] = hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.objs[key]; ok {
		if old.meta[objstore.MetaSHA256] != mt[objstore.MetaSHA256] {
			return fmt.Errorf("memstore: put %s: %w", key, objstore.ErrExists)
		}
		return nil
	}
	s.puts++
	s.objs[key] = object{data: b, meta: mt, mod: time.Now()}
	return nil
}

// CheckKey accepts the keys every backend can store
// ([objstore.CheckPortableKey]), so that the engine's tests fail on a key
// some backend would refuse.
func (s *Store) CheckKey(key string) error {
	if err := objstore.CheckPortableKey(key); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	return nil
}

// checkMeta enforces the [objstore.Storage] metadata rules, as the real
// backends do.
func checkMeta(meta map[string]string) error {
	for k, v := range meta {
		if k == "" || strings.ContainsFunc(k, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_'
		}) {
			return fmt.Errorf("metadata key %q: want lower-case letters, digits, '-' or '_'", k)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return fmt.Errorf("metadata %q: value is not printable ASCII", k)
		}
	}
	return nil
}

// Get opens key for reading n bytes from offset off, or to the end if
// n < 0. A whole-object read (off 0, n < 0) verifies the stored SHA-256 at
// EOF and returns an error matching [objstore.ErrChecksum] instead of
// io.EOF on a mismatch. A range past the end of the object is an error
// matching [io.ErrUnexpectedEOF]; a missing key one matching
// [objstore.ErrNotExist]. Reads fail once ctx is done.
func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, fmt.Errorf("memstore: get %s: negative offset %d", key, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: get %s: %w", key, err)
	}
	s.mu.Lock()
	o, ok := s.objs[key]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("memstore: get %s: %w", key, objstore.ErrNotExist)
	}
	size := int64(len(o.data))
	if off > size || (n >= 0 && n > size-off) {
		return nil, fmt.Errorf("memstore: get %s: range %d+%d past the end of %d bytes: %w", key, off, n, size, io.ErrUnexpectedEOF)
	}
	end := size
	if n >= 0 {
		end = off + n
	}
	r := &reader{ctx: ctx, key: key, r: bytes.NewReader(o.data[off:end])}
	if off == 0 && n < 0 {
		r.verify, r.want = o.data, o.meta[objstore.MetaSHA256]
	}
	return r, nil
}

// reader reads a stored object's bytes, failing once ctx is done and, for a
// whole-object read, checking their SHA-256 at EOF.
type reader struct {
	ctx    context.Context
	key    string
	r      *bytes.Reader
	verify []byte // the whole object, nil: no verification
	want   string
	err    error // sticky
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = fmt.Errorf("memstore: get %s: %w", r.key, err)
		return 0, r.err
	}
	n, err := r.r.Read(p)
	if errors.Is(err, io.EOF) && r.verify != nil {
		sum := sha256.Sum256(r.verify)
		if got := hex.EncodeToString(sum[:]); got != r.want {
			err = fmt.Errorf("memstore: get %s: %w: content sha256 %s, stored %s", r.key, objstore.ErrChecksum, got, r.want)
		}
	}
	r.err = err
	return n, err
}

// Close releases nothing; it is there for io.ReadCloser.
func (r *reader) Close() error { return nil }

// Head returns the size, modification time and metadata of key, or an error
// matching [objstore.ErrNotExist].
func (s *Store) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("memstore: head %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[key]
	if !ok {
		return objstore.ObjectInfo{}, fmt.Errorf("memstore: head %s: %w", key, objstore.ErrNotExist)
	}
	return objstore.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.mod, Metadata: maps.Clone(o.meta)}, nil
}

// List yields the objects whose keys start with prefix and sort after
// startAfter, in ascending key order, as they were when the iteration
// started. It yields ctx's error and stops once ctx is done.
func (s *Store) List(ctx context.Context, prefix, startAfter string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(objstore.ObjectInfo{}, fmt.Errorf("memstore: list %s: %w", prefix, err))
			return
		}
		s.mu.Lock()
		s.lists++
		var infos []objstore.ObjectInfo
		for k, o := range s.objs {
			if strings.HasPrefix(k, prefix) && k > startAfter {
				infos = append(infos, objstore.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.mod})
			}
		}
		s.mu.Unlock()
		slices.SortFunc(infos, func(a, b objstore.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
		for _, info := range infos {
			if err := ctx.Err(); err != nil {
				yield(objstore.ObjectInfo{}, fmt.Errorf("memstore: list %s: %w", prefix, err))
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Delete removes keys; missing keys are not an error. Nothing is removed if
// ctx is already done.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: delete: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.objs, k)
	}
	return nil
}
