package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/objstore"
)

// longKey returns a key of n bytes made of elements of at most 100 bytes,
// so that only its total length can be over a backend's limit.
func longKey(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), min(100, n-b.Len())))
	}
	return b.String()[:n]
}

// testCheckKey checks the key rules the store states: it must be a
// [objstore.KeyChecker]; it must accept the keys of databases named after
// their paths (dot-directories, spaces, non-ASCII) with the longest suffixes
// walsync appends, and refuse what no backend stores; and every key it
// accepts, up to and past the length limits, must be stored, read, listed
// and deleted.
func testCheckKey(t *testing.T, s objstore.Storage) {
	kc, ok := s.(objstore.KeyChecker)
	if !ok {
		t.Fatalf("%T is not an objstore.KeyChecker: every backend states its key rules", s)
	}
	accept := []string{
		"home/u/.local/share/app.db/0009/0000000000000001-ffffffffffffffff.ltx",
		"home/u/.local/share/app.db-walsync/lease/0000000000000001",
		".hidden/a",
		"a/.hidden",
		"with space/ünïcødé/日本語.db/0000/x",
		longKey(900),
	}
	for i, key := range accept {
		if err := kc.CheckKey(key); err != nil {
			t.Fatalf("CheckKey(%q): %v", key, err)
		}
		roundTrip(t, s, key, content(20, 10+i))
	}
	refuse := []string{"", "bad/\xff.db", "nul/a\x00b", "ctl/\x01", "new\nline", "a/../b", "a/./b", "..", longKey(4097)}
	for _, key := range refuse {
		err := kc.CheckKey(key)
		if !errors.Is(err, objstore.ErrInvalidKey) {
			t.Fatalf("CheckKey(%.60q) err=%v, want ErrInvalidKey", key, err)
		}
		if len(key) > 200 && strings.Contains(err.Error(), key) {
			t.Fatalf("CheckKey(long key) err repeats all %d bytes of it", len(key))
		}
	}
	// Around the length limits, whatever the backend accepts works.
	for i, n := range []int{1000, 1020, 1024, 1025, 2000} {
		key := longKey(n)
		if err := kc.CheckKey(key); err != nil {
			if !errors.Is(err, objstore.ErrInvalidKey) {
				t.Fatalf("CheckKey(%d bytes) err=%v, want nil or ErrInvalidKey", n, err)
			}
			continue
		}
		roundTrip(t, s, key, content(21, 10+i))
	}
}

// roundTrip stores data under key, reads, heads, lists and deletes it.
func roundTrip(t *testing.T, s objstore.Storage, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("Put(%.60q) of a key CheckKey accepts: %v", key, err)
	}
	if got := get(t, s, key); !bytes.Equal(got, data) {
		t.Fatalf("Get(%.60q) returned other content", key)
	}
	if _, err := s.Head(t.Context(), key); err != nil {
		t.Fatalf("Head(%.60q): %v", key, err)
	}
	if got := keysOf(list(t, s, key, "")); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", []string{key}) {
		t.Fatalf("List(%.60q)=%.200q, want the key", key, got)
	}
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete(%.60q): %v", key, err)
	}
	if _, err := s.Head(t.Context(), key); !errors.Is(err, objstore.ErrNotExist) {
		t.Fatalf("Head(%.60q) after Delete err=%v, want ErrNotExist", key, err)
	}
}
