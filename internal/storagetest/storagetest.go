// Package storagetest is the contract suite for implementations of
// [objstore.Storage] (which package replicate re-exports as
// replicate.Storage). Every backend runs it from its own tests, and so does
// internal/memstore, the in-memory store of the engine's unit tests:
//
//	func TestStore(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) objstore.Storage {
//			return newEmptyStore(t)
//		})
//	}
//
// The suite checks what the engine relies on: never-overwriting,
// idempotent Put; verified whole-object reads; exact ranged reads; missing
// keys matching [objstore.ErrNotExist]; ordered, paged listing; batch
// delete; odd characters in keys; the key rules each backend states
// ([objstore.KeyChecker]), which must accept what database names derived
// from paths need and hold for every key they accept; and context
// cancellation.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/objstore"
)

// DefaultManyKeys is the number of keys the paging subtest writes unless
// [WithManyKeys] says otherwise: one more than an S3 list page.
const DefaultManyKeys = 1001

// Option configures [Run].
type Option func(*options)

type options struct {
	corrupt  func(t *testing.T, s objstore.Storage, key string)
	manyKeys int
}

// WithCorrupter enables the corruption subtest. fn must replace the stored
// content of key in s (a store made by Run's newStore) with different bytes
// of the same length, keeping the SHA-256 the backend stored with it, so
// that only a verifying reader notices.
func WithCorrupter(fn func(t *testing.T, s objstore.Storage, key string)) Option {
	return func(o *options) { o.corrupt = fn }
}

// WithManyKeys sets the number of keys the paging subtest writes.
func WithManyKeys(n int) Option {
	return func(o *options) { o.manyKeys = n }
}

// Run runs the contract suite as subtests of t. newStore must return an
// empty store, separate from the ones it returned before; it may register
// cleanups on the subtest it is given.
func Run(t *testing.T, newStore func(t *testing.T) objstore.Storage, opts ...Option) {
	o := options{manyKeys: DefaultManyKeys}
	for _, opt := range opts {
		opt(&o)
	}
	t.Run("PutGet", func(t *testing.T) { testPutGet(t, newStore(t)) })
	t.Run("GetRange", func(t *testing.T) { testGetRange(t, newStore(t)) })
	t.Run("ErrNotExist", func(t *testing.T) { testNotExist(t, newStore(t)) })
	t.Run("PutSameContent", func(t *testing.T) { testPutSame(t, newStore(t)) })
	t.Run("ErrExists", func(t *testing.T) { testExists(t, newStore(t)) })
	t.Run("ConcurrentPut", func(t *testing.T) { testConcurrentPut(t, newStore(t)) })
	t.Run("PutRewinds", func(t *testing.T) { testPutRewinds(t, newStore(t)) })
	t.Run("ErrShortReader", func(t *testing.T) { testShortReader(t, newStore(t)) })
	if o.corrupt != nil {
		t.Run("ErrChecksum", func(t *testing.T) { testChecksum(t, newStore(t), o.corrupt) })
	}
	t.Run("HeadMetadata", func(t *testing.T) { testHeadMetadata(t, newStore(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newStore(t)) })
	t.Run("ListMany", func(t *testing.T) { testListMany(t, newStore(t), o.manyKeys) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("OddKeys", func(t *testing.T) { testOddKeys(t, newStore(t)) })
	t.Run("CheckKey", func(t *testing.T) { testCheckKey(t, newStore(t)) })
	t.Run("Canceled", func(t *testing.T) { testCanceled(t, newStore(t)) })
}

// content returns n pseudo-random bytes determined by seed.
func content(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// put stores data under key and fails the test on error.
func put(t *testing.T, s objstore.Storage, key string, data []byte, meta map[string]string) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// read returns what Get(key, off, n) reads, or the first error.
func read(ctx context.Context, s objstore.Storage, key string, off, n int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return b, err
}

// get returns the whole object stored under key and fails the test on error.
func get(t *testing.T, s objstore.Storage, key string) []byte {
	t.Helper()
	b, err := read(t.Context(), s, key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}

// list collects List(prefix, startAfter) and fails the test on error.
func list(t *testing.T, s objstore.Storage, prefix, startAfter string) []objstore.ObjectInfo {
	t.Helper()
	var infos []objstore.ObjectInfo
	for info, err := range s.List(t.Context(), prefix, startAfter) {
		if err != nil {
			t.Fatalf("List(%q, %q): %v", prefix, startAfter, err)
		}
		infos = append(infos, info)
	}
	return infos
}

func keysOf(infos []objstore.ObjectInfo) []string {
	keys := make([]string, len(infos))
	for i, info := range infos {
		keys[i] = info.Key
	}
	return keys
}

func testPutGet(t *testing.T, s objstore.Storage) {
	for _, size := range []int{0, 1, 4097, 1 << 20} {
		key := fmt.Sprintf("putget/%d.bin", size)
		data := content(1, size)
		put(t, s, key, data, nil)
		if got := get(t, s, key); !bytes.Equal(got, data) {
			t.Fatalf("Get(%q) returned %d bytes (sha256 %s), want %d bytes (sha256 %s)",
				key, len(got), sum(got), len(data), sum(data))
		}
		info, err := s.Head(t.Context(), key)
		if err != nil {
			t.Fatalf("Head(%q): %v", key, err)
		}
		if got, want := info.Size, int64(size); got != want {
			t.Fatalf("Head(%q).Size=%d, want %d", key, got, want)
		}
		if got, want := info.Metadata[objstore.MetaSHA256], sum(data); got != want {
			t.Fatalf("Head(%q).Metadata[%q]=%q, want %q", key, objstore.MetaSHA256, got, want)
		}
	}
}

func testGetRange(t *testing.T, s objstore.Storage) {
	data := content(2, 100)
	put(t, s, "range", data, nil)
	for _, tt := range []struct{ off, n, from, to int64 }{
		{off: 10, n: 20, from: 10, to: 30},
		{off: 0, n: 1, from: 0, to: 1},
		{off: 90, n: 10, from: 90, to: 100},
		{off: 0, n: 100, from: 0, to: 100},
		{off: 40, n: 0, from: 40, to: 40},
		{off: 50, n: -1, from: 50, to: 100},
	} {
		got, err := read(t.Context(), s, "range", tt.off, tt.n)
		if err != nil {
			t.Fatalf("Get(off=%d, n=%d): %v", tt.off, tt.n, err)
		}
		if want := data[tt.from:tt.to]; !bytes.Equal(got, want) {
			t.Fatalf("Get(off=%d, n=%d)=%x, want %x", tt.off, tt.n, got, want)
		}
	}
	for _, tt := range []struct{ off, n int64 }{{95, 10}, {100, 1}, {200, 10}} {
		if got, err := read(t.Context(), s, "range", tt.off, tt.n); err == nil {
			t.Fatalf("Get(off=%d, n=%d) past the end read %d bytes and no error", tt.off, tt.n, len(got))
		}
	}
}

func testNotExist(t *testing.T, s objstore.Storage) {
	put(t, s, "exists", []byte("x"), nil)
	const key = "missing/key"
	for _, r := range []struct{ off, n int64 }{{0, -1}, {1, 2}} {
		_, err := read(t.Context(), s, key, r.off, r.n)
		if !errors.Is(err, objstore.ErrNotExist) {
			t.Fatalf("Get(%q, %d, %d) err=%v, want ErrNotExist", key, r.off, r.n, err)
		}
		if !strings.Contains(err.Error(), key) {
			t.Fatalf("Get(%q) err=%q does not name the key", key, err)
		}
	}
	if _, err := s.Head(t.Context(), key); !errors.Is(err, objstore.ErrNotExist) {
		t.Fatalf("Head(%q) err=%v, want ErrNotExist", key, err)
	}
}

func testPutSame(t *testing.T, s objstore.Storage) {
	data := content(3, 1000)
	put(t, s, "same", data, nil)
	put(t, s, "same", data, map[string]string{"other": "meta"})
	if got := get(t, s, "same"); !bytes.Equal(got, data) {
		t.Fatalf("Get after second Put returned other content")
	}
}

func testExists(t *testing.T, s objstore.Storage) {
	data := content(4, 1000)
	put(t, s, "exists", data, nil)
	for _, other := range [][]byte{content(5, 1000), content(5, 10), {}} {
		err := s.Put(t.Context(), "exists", bytes.NewReader(other), int64(len(other)), nil)
		if !errors.Is(err, objstore.ErrExists) {
			t.Fatalf("Put(%d other bytes) err=%v, want ErrExists", len(other), err)
		}
		if !strings.Contains(err.Error(), "exists") {
			t.Fatalf("Put err=%q does not name the key", err)
		}
	}
	if got := get(t, s, "exists"); !bytes.Equal(got, data) {
		t.Fatalf("Get after refused Put returned other content")
	}
}

func testPutRewinds(t *testing.T, s objstore.Storage) {
	data := content(6, 1000)
	r := bytes.NewReader(data)
	if _, err := r.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "rewind", r, int64(len(data)), nil); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got := get(t, s, "rewind"); !bytes.Equal(got, data) {
		t.Fatalf("Put from a reader at EOF stored %d bytes, want the %d from the start", len(got), len(data))
	}
}

func testShortReader(t *testing.T, s objstore.Storage) {
	data := content(7, 100)
	if err := s.Put(t.Context(), "short", bytes.NewReader(data), 101, nil); err == nil {
		t.Fatalf("Put of 100 bytes with size 101 succeeded")
	}
	if _, err := s.Head(t.Context(), "short"); !errors.Is(err, objstore.ErrNotExist) {
		t.Fatalf("Head after failed Put err=%v, want ErrNotExist", err)
	}
}

func testChecksum(t *testing.T, s objstore.Storage, corrupt func(*testing.T, objstore.Storage, string)) {
	const key = "corrupt/object"
	data := content(8, 5000)
	put(t, s, key, data, nil)
	corrupt(t, s, key)
	_, err := read(t.Context(), s, key, 0, -1)
	if !errors.Is(err, objstore.ErrChecksum) {
		t.Fatalf("Get of corrupted object err=%v, want ErrChecksum", err)
	}
	if !strings.Contains(err.Error(), key) {
		t.Fatalf("Get err=%q does not name the key", err)
	}
}

func testHeadMetadata(t *testing.T, s objstore.Storage) {
	data := content(9, 321)
	meta := map[string]string{
		objstore.MetaTimestamp: "2025-01-02T03:04:05.123456789Z",
		"walsync-x":            "printable ASCII: ~!@#$%^&*()",
	}
	put(t, s, "meta/object", data, meta)
	info, err := s.Head(t.Context(), "meta/object")
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	if got, want := info.Key, "meta/object"; got != want {
		t.Fatalf("Head.Key=%q, want %q", got, want)
	}
	if got, want := info.Size, int64(len(data)); got != want {
		t.Fatalf("Head.Size=%d, want %d", got, want)
	}
	if info.ModTime.IsZero() {
		t.Fatalf("Head.ModTime is zero")
	}
	meta[objstore.MetaSHA256] = sum(data)
	if got, want := len(info.Metadata), len(meta); got != want {
		t.Fatalf("Head.Metadata=%q, want %q", info.Metadata, meta)
	}
	for k, want := range meta {
		if got := info.Metadata[k]; got != want {
			t.Fatalf("Head.Metadata[%q]=%q, want %q", k, got, want)
		}
	}
}

func testList(t *testing.T, s objstore.Storage) {
	// '-' sorts before '/', which sorts before letters: a backend that walks
	// directories must still yield keys in byte order.
	keys := []string{"a-b", "a/1", "a/2", "a/b/1", "a/b/2", "ab/c", "b"}
	for i, key := range []string{"a/b/2", "b", "a/1", "ab/c", "a-b", "a/2", "a/b/1"} {
		put(t, s, key, content(10, i), nil)
	}
	for _, tt := range []struct {
		prefix, startAfter string
		want               []string
	}{
		{"", "", keys},
		{"a/", "", keys[1:5]},
		{"a", "", keys[:6]},
		{"a/b", "", keys[3:5]},
		{"a/", "a/1", keys[2:5]},
		{"a/", "a/2", keys[3:5]},
		{"", "a/b/2", keys[5:]},
		{"", "a/b", keys[3:]},
		{"", "b", nil},
		{"zzz", "", nil},
		{"a/b/1", "", keys[3:4]},
	} {
		got := keysOf(list(t, s, tt.prefix, tt.startAfter))
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Fatalf("List(%q, %q)=%q, want %q", tt.prefix, tt.startAfter, got, tt.want)
		}
	}
	for _, info := range list(t, s, "a/b/", "") {
		if got, want := info.Size, int64(map[string]int{"a/b/1": 6, "a/b/2": 0}[info.Key]); got != want {
			t.Fatalf("List: %s Size=%d, want %d", info.Key, got, want)
		}
	}
	n := 0
	for _, err := range s.List(t.Context(), "", "") {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
}

func testListMany(t *testing.T, s objstore.Storage, n int) {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("many/%06d", i)
	}
	putAll(t, s, keys)
	got := keysOf(list(t, s, "many/", ""))
	if len(got) != n {
		t.Fatalf("List returned %d keys, want %d", len(got), n)
	}
	for i := range got {
		if got[i] != keys[i] {
			t.Fatalf("List key %d=%q, want %q", i, got[i], keys[i])
		}
	}
	got = keysOf(list(t, s, "many/", keys[n-3]))
	if fmt.Sprint(got) != fmt.Sprint(keys[n-2:]) {
		t.Fatalf("List after %q=%q, want %q", keys[n-3], got, keys[n-2:])
	}
	if err := s.Delete(t.Context(), keys...); err != nil {
		t.Fatalf("Delete(%d keys): %v", n, err)
	}
	if got := list(t, s, "", ""); len(got) != 0 {
		t.Fatalf("List after Delete returned %d keys, first %q", len(got), got[0].Key)
	}
}
