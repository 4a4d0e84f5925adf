package memstore

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/walsync/walsync/internal/objstore"
	"github.com/walsync/walsync/internal/storagetest"
)

func TestStore(t *testing.T) {
	storagetest.Run(t,
		func(t *testing.T) objstore.Storage { return New() },
		storagetest.WithCorrupter(func(t *testing.T, s objstore.Storage, key string) {
			m := s.(*Store)
			m.mu.Lock()
			defer m.mu.Unlock()
			o := m.objs[key]
			o.data = bytes.Clone(o.data)
			o.data[len(o.data)/2] ^= 0xff
			m.objs[key] = o
		}))
}

func TestStore_Put(t *testing.T) {
	put := func(s *Store, key, data string, meta map[string]string) error {
		return s.Put(t.Context(), key, bytes.NewReader([]byte(data)), int64(len(data)), meta)
	}
	t.Run("OK", func(t *testing.T) {
		s := New()
		for _, data := range []string{"a", "a", "a"} {
			if err := put(s, "k", data, map[string]string{"litestream-timestamp": "2025-01-02T03:04:05Z"}); err != nil {
				t.Fatalf("Put: %v", err)
			}
		}
		if err := put(s, "other", "b", nil); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if got, want := s.Puts(), 2; got != want {
			t.Fatalf("Puts()=%d, want %d (the same content again stores nothing)", got, want)
		}
		if got, want := fmt.Sprint(s.Keys("")), "[k other]"; got != want {
			t.Fatalf("Keys(\"\")=%s, want %s", got, want)
		}
	})
	t.Run("ErrInvalidMeta", func(t *testing.T) {
		s := New()
		for _, meta := range []map[string]string{{"Upper": "x"}, {"": "x"}, {"k": "line\nbreak"}, {"k": "ü"}} {
			if err := put(s, "k", "data", meta); err == nil {
				t.Fatalf("Put with metadata %q succeeded", meta)
			}
		}
		if got := s.Keys(""); len(got) != 0 {
			t.Fatalf("Keys after refused Puts=%q, want none", got)
		}
	})
}

func TestStore_Lists(t *testing.T) {
	s := New()
	for range s.List(t.Context(), "", "") {
	}
	for range s.List(t.Context(), "x", "") {
	}
	if got, want := s.Lists(), 2; got != want {
		t.Fatalf("Lists()=%d, want %d", got, want)
	}
}

func TestStore_ErrNegativeOffset(t *testing.T) {
	s := New()
	if err := s.Put(t.Context(), "k", bytes.NewReader([]byte("data")), 4, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "k", -1, 2); err == nil {
		t.Fatal("Get at offset -1 succeeded")
	}
}
