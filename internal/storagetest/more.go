package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/walsync/walsync/internal/objstore"
)

// putAll stores a small distinct object under each key, a few at a time.
func putAll(t *testing.T, s objstore.Storage, keys []string) {
	t.Helper()
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(8)
	for _, key := range keys {
		g.Go(func() error {
			data := []byte(key)
			return s.Put(ctx, key, bytes.NewReader(data), int64(len(data)), nil)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

// testConcurrentPut races Puts of one key: with the same content all
// succeed; with different contents exactly one does, and it is stored.
func testConcurrentPut(t *testing.T, s objstore.Storage) {
	const n = 8
	same := content(13, 2000)
	errs := make([]error, n)
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			errs[i] = s.Put(t.Context(), "race/same", bytes.NewReader(same), int64(len(same)), nil)
			return nil
		})
	}
	g.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put %d of the same content: %v", i, err)
		}
	}
	datas := make([][]byte, n)
	for i := range n {
		g.Go(func() error {
			datas[i] = content(uint64(100+i), 2000)
			errs[i] = s.Put(t.Context(), "race/diff", bytes.NewReader(datas[i]), 2000, nil)
			return nil
		})
	}
	g.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("concurrent Puts %d and %d of different content both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, objstore.ErrExists):
			t.Fatalf("concurrent Put %d of different content err=%v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no concurrent Put of different content succeeded")
	}
	if got := get(t, s, "race/diff"); !bytes.Equal(got, datas[winner]) {
		t.Fatalf("stored content is not that of the Put that succeeded")
	}
}

func testDelete(t *testing.T, s objstore.Storage) {
	putAll(t, s, []string{"del/a", "del/b", "del/sub/c", "keep"})
	if err := s.Delete(t.Context()); err != nil {
		t.Fatalf("Delete(): %v", err)
	}
	if err := s.Delete(t.Context(), "del/a", "del/sub/c", "del/missing", "nothing/here"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, key := range []string{"del/a", "del/sub/c"} {
		if _, err := s.Head(t.Context(), key); !errors.Is(err, objstore.ErrNotExist) {
			t.Fatalf("Head(%q) after Delete err=%v, want ErrNotExist", key, err)
		}
	}
	if got, want := fmt.Sprint(keysOf(list(t, s, "", ""))), "[del/b keep]"; got != want {
		t.Fatalf("List after Delete=%s, want %s", got, want)
	}
	// A deleted key can be written again, with other content.
	put(t, s, "del/a", []byte("new content"), nil)
	if got, want := string(get(t, s, "del/a")), "new content"; got != want {
		t.Fatalf("Get after re-Put=%q, want %q", got, want)
	}
	// Deleting twice is fine.
	if err := s.Delete(t.Context(), "del/sub/c"); err != nil {
		t.Fatalf("Delete of a deleted key: %v", err)
	}
}

func testOddKeys(t *testing.T, s objstore.Storage) {
	keys := []string{
		"odd/with space",
		"odd/plus+sign",
		"odd/ünïcødé/日本語",
		"odd/percent%20and%2F",
		"odd/query?a=b&c=d#frag",
		"odd/tilde~star*(paren)'quote'",
		"odd/semi;colon:comma,at@dollar$",
	}
	for i, key := range keys {
		data := content(11, 10+i)
		put(t, s, key, data, nil)
		if got := get(t, s, key); !bytes.Equal(got, data) {
			t.Fatalf("Get(%q) returned other content", key)
		}
		info, err := s.Head(t.Context(), key)
		if err != nil {
			t.Fatalf("Head(%q): %v", key, err)
		}
		if got, want := info.Key, key; got != want {
			t.Fatalf("Head.Key=%q, want %q", got, want)
		}
	}
	got := keysOf(list(t, s, "odd/", ""))
	want := slices.Sorted(slices.Values(keys))
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("List=%q, want %q", got, want)
	}
	if err := s.Delete(t.Context(), keys...); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := list(t, s, "odd/", ""); len(got) != 0 {
		t.Fatalf("List after Delete returned %d keys", len(got))
	}
}

func testCanceled(t *testing.T, s objstore.Storage) {
	data := []byte("data")
	put(t, s, "ctx/a", data, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a canceled context: err=%v, want context.Canceled", op, err)
		}
	}
	check("Put", s.Put(ctx, "ctx/b", bytes.NewReader(data), int64(len(data)), nil))
	_, err := read(ctx, s, "ctx/a", 0, -1)
	check("Get", err)
	_, err = s.Head(ctx, "ctx/a")
	check("Head", err)
	err = nil
	for _, e := range s.List(ctx, "", "") {
		if e != nil {
			err = e
			break
		}
	}
	check("List", err)
	check("Delete", s.Delete(ctx, "ctx/a"))

	// Nothing changed.
	if got, want := fmt.Sprint(keysOf(list(t, s, "", ""))), "[ctx/a]"; got != want {
		t.Fatalf("List after canceled calls=%s, want %s", got, want)
	}

	// A reader fails once its context is canceled.
	big := content(12, 1<<20)
	put(t, s, "ctx/big", big, nil)
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	rc, err := s.Get(ctx, "ctx/big", 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	buf := make([]byte, 1024)
	if _, err := rc.Read(buf); err != nil {
		t.Fatalf("Read: %v", err)
	}
	cancel()
	for err == nil {
		_, err = rc.Read(buf)
	}
	check("Read after cancel", err)
}
