package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is an in-memory Storage for unit tests. Integration tests use
// the real backends (internal/dirstore, s3 against versitygw).
type memStore struct {
	mu    sync.Mutex
	objs  map[string]memObj
	puts  int
	lists int
}

func (m *memStore) putCount() int  { m.mu.Lock(); defer m.mu.Unlock(); return m.puts }
func (m *memStore) listCount() int { m.mu.Lock(); defer m.mu.Unlock(); return m.lists }

type memObj struct {
	data []byte
	meta map[string]string
	mod  time.Time
}

func newMemStore() *memStore { return &memStore{objs: make(map[string]memObj)} }

func (m *memStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(b)) != size {
		return fmt.Errorf("put %s: size %d, read %d", key, size, len(b))
	}
	sum := sha256.Sum256(b)
	mt := maps.Clone(meta)
	if mt == nil {
		mt = map[string]string{}
	}
	mt[MetaSHA256] = hex.EncodeToString(sum[:])
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.objs[key]; ok {
		if !bytes.Equal(old.data, b) {
			return fmt.Errorf("put %s: %w", key, ErrExists)
		}
		return nil
	}
	m.puts++
	m.objs[key] = memObj{data: b, meta: mt, mod: time.Now()}
	return nil
}

func (m *memStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	m.mu.Lock()
	o, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotExist)
	}
	b := o.data
	if n < 0 {
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != o.meta[MetaSHA256] {
			return nil, fmt.Errorf("get %s: %w", key, ErrChecksum)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	if off+n > int64(len(b)) {
		return nil, fmt.Errorf("get %s: range past end", key)
	}
	return io.NopCloser(bytes.NewReader(b[off : off+n])), nil
}

func (m *memStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return ObjectInfo{}, fmt.Errorf("head %s: %w", key, ErrNotExist)
	}
	return ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.mod, Metadata: maps.Clone(o.meta)}, nil
}

func (m *memStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		m.mu.Lock()
		m.lists++
		keys := slices.Sorted(maps.Keys(m.objs))
		objs := maps.Clone(m.objs)
		m.mu.Unlock()
		for _, k := range keys {
			if !strings.HasPrefix(k, prefix) || k <= startAfter {
				continue
			}
			if !yield(ObjectInfo{Key: k, Size: int64(len(objs[k].data)), ModTime: objs[k].mod}, nil) {
				return
			}
		}
	}
}

func (m *memStore) Delete(ctx context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.objs, k)
	}
	return nil
}

// Keys returns the stored keys with a prefix.
func (m *memStore) Keys(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// NewMemStore returns an in-memory Storage for the external tests.
func NewMemStore() *memStore { return newMemStore() }

// newDirStoreLite is the in-memory store under the name the white-box
// tests use.
func newDirStoreLite(t testing.TB) *memStore { return newMemStore() }
