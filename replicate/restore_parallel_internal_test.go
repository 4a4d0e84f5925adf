package replicate

import (
	"context"
	"errors"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// inflightStore counts the GET bodies open at once. Its first
// whole-object GET waits until a second one is open, so a restore that
// downloads one file at a time never gets past it.
type inflightStore struct {
	Storage
	mu       sync.Mutex
	open     int
	maxOpen  int
	whole    int
	barrier  chan struct{}
	requests int
}

func (s *inflightStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Storage.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.open++
	s.requests++
	s.maxOpen = max(s.maxOpen, s.open)
	first := false
	if n < 0 {
		s.whole++
		first = s.whole == 1
		if s.whole == 2 {
			close(s.barrier)
		}
	}
	s.mu.Unlock()
	body := &trackedBody{ReadCloser: rc, s: s}
	if first {
		select {
		case <-s.barrier:
		case <-ctx.Done():
			body.Close()
			return nil, ctx.Err()
		}
	}
	return body, nil
}

type trackedBody struct {
	io.ReadCloser
	s    *inflightStore
	once sync.Once
}

func (b *trackedBody) Close() error {
	b.once.Do(func() {
		b.s.mu.Lock()
		b.s.open--
		b.s.mu.Unlock()
	})
	return b.ReadCloser.Close()
}

// TestRestoreConcurrent: a restore of many files has several GETs open at
// once (the barrier holds the first until a second opens), never more
// than RestoreOptions.Concurrency, with every object whole or in ranged
// parts; the result counts the GETs made. (Restoring one file at a time,
// as main did, the first GET waits until the context expires.)
func TestRestoreConcurrent(t *testing.T) {
	h := newHistory(3, 40)
	for _, c := range []struct {
		name string
		big  int64
	}{{"Whole", bigObjectSize}, {"Parts", 100}} {
		t.Run(c.name, func(t *testing.T) {
			defer func(b, p int64) { bigObjectSize, partSize = b, p }(bigObjectSize, partSize)
			bigObjectSize, partSize = c.big, 64
			mem, _ := h.store(t, historyLayouts()[0].layout)
			store := &inflightStore{Storage: mem, barrier: make(chan struct{})}
			if c.big < 1<<20 {
				close(store.barrier) // ranged parts only: no whole GET to wait on
				store.whole = 2
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			res, err := Restore(ctx, store, "db", filepath.Join(t.TempDir(), "out.db"), RestoreOptions{Check: IntegrityNone, Concurrency: 3})
			if err != nil {
				t.Fatal(err)
			}
			if store.maxOpen < 2 || store.maxOpen > 3 {
				t.Errorf("at most %d GET bodies open at once, want 2 or 3 (Concurrency 3)", store.maxOpen)
			}
			if res.Files != 40 || res.Requests != store.requests {
				t.Errorf("result: %d files, %d requests; want 40 files, %d requests", res.Files, res.Requests, store.requests)
			}
		})
	}
}

// TestRestoreProgress: progress is reported from one goroutine at a time,
// and last with Done set and every file and byte of the plan counted.
func TestRestoreProgress(t *testing.T) {
	h := newHistory(4, 40)
	store, _ := h.store(t, historyLayouts()[1].layout)
	var (
		calls []RestoreProgress
		busy  atomic.Bool
	)
	res, err := Restore(t.Context(), store, "db", filepath.Join(t.TempDir(), "out.db"), RestoreOptions{
		Check: IntegrityNone,
		Progress: func(p RestoreProgress) {
			if !busy.CompareAndSwap(false, true) {
				t.Error("progress called concurrently")
			}
			calls = append(calls, p)
			busy.Store(false)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 {
		t.Fatal("progress never called")
	}
	last := calls[len(calls)-1]
	if !last.Done || last.Files != res.Files || last.FilesTotal != res.Files || last.Bytes != last.BytesTotal || last.BytesTotal == 0 {
		t.Errorf("last progress %+v, want Done with %d files and all bytes", last, res.Files)
	}
	for _, p := range calls[:len(calls)-1] {
		if p.Done {
			t.Errorf("progress %+v before the last has Done set", p)
		}
	}
	if res.Bytes < last.BytesTotal || res.Requests < res.Files {
		t.Errorf("result %+v: want at least %d bytes and %d requests", res, last.BytesTotal, res.Files)
	}
}

// cancelStore cancels a context at its n-th GET.
type cancelStore struct {
	Storage
	n      atomic.Int32
	at     int32
	cancel context.CancelFunc
}

func (s *cancelStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.n.Add(1) == s.at {
		s.cancel()
	}
	return s.Storage.Get(ctx, key, off, n)
}

// wrongSumStore reports a wrong SHA-256 for every object.
type wrongSumStore struct{ Storage }

func (s wrongSumStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	info, err := s.Storage.Head(ctx, key)
	info.Metadata = map[string]string{MetaSHA256: strings.Repeat("0", 64)}
	return info, err
}

// TestRestoreRefusedLeavesNothing: a restore cancelled while it downloads,
// and one whose object downloaded in ranged parts does not match its
// stored SHA-256, fail with that error and leave nothing in the output
// directory (the download directory included).
func TestRestoreRefusedLeavesNothing(t *testing.T) {
	h := newHistory(5, 40)
	mem, _ := h.store(t, historyLayouts()[0].layout)
	t.Run("Cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		dir := t.TempDir()
		store := &cancelStore{Storage: mem, at: 5, cancel: cancel}
		_, err := Restore(ctx, store, "db", filepath.Join(dir, "out.db"), RestoreOptions{Check: IntegrityNone, Concurrency: 2})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Restore: %v, want %v", err, context.Canceled)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("output directory holds %v", ents)
		}
	})
	t.Run("ErrChecksumRanged", func(t *testing.T) {
		defer func(b, p int64) { bigObjectSize, partSize = b, p }(bigObjectSize, partSize)
		bigObjectSize, partSize = 100, 64
		dir := t.TempDir()
		_, err := Restore(t.Context(), wrongSumStore{mem}, "db", filepath.Join(dir, "out.db"), RestoreOptions{Check: IntegrityNone})
		if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "db/") {
			t.Fatalf("Restore: %v, want %v naming an object", err, ErrChecksum)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("output directory holds %v", ents)
		}
	})
}

// shortListStore lists every object 10 bytes smaller than it is, as a
// hostile target may.
type shortListStore struct{ Storage }

func (s shortListStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		for o, err := range s.Storage.List(ctx, prefix, startAfter) {
			o.Size -= 10
			if !yield(o, err) {
				return
			}
		}
	}
}

// TestRestoreListedSize: an object larger than the listing says is
// refused, naming it, instead of filling the temporary disk the restore
// checked against the listing.
func TestRestoreListedSize(t *testing.T) {
	h := newHistory(6, 5)
	mem, _ := h.store(t, historyLayouts()[0].layout[:5])
	dir := t.TempDir()
	_, err := Restore(t.Context(), shortListStore{mem}, "db", filepath.Join(dir, "out.db"), RestoreOptions{Check: IntegrityNone})
	if err == nil || !strings.Contains(err.Error(), "bytes listed") || !strings.Contains(err.Error(), "db/") {
		t.Fatalf("Restore: %v, want a refusal naming an object larger than listed", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("output directory holds %v", ents)
	}
}

// TestRestoreRemovesStaleDirs: the download directory a killed restore
// left is removed by the next restore in the same directory once it is a
// minute old, with what it holds; one that a running restore holds is
// kept, however old.
func TestRestoreRemovesStaleDirs(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * staleTempAge)
	out := filepath.Join(dir, "app.db")
	stale, err := createRestoreDir(out)
	if err != nil {
		t.Fatal(err)
	}
	held, err := createRestoreDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer held.remove()
	for _, d := range []*restoreDir{stale, held} {
		if err := os.WriteFile(filepath.Join(d.path, "000000.ltx"), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(d.path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	stale.lock.Close() // killed: the lock is gone, the directory stays
	h := newHistory(7, 3)
	mem, _ := h.store(t, historyLayouts()[0].layout[:3])
	if _, err := Restore(t.Context(), mem, "db", out, RestoreOptions{Check: IntegrityNone}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale download directory: %v, want it removed", err)
	}
	if _, err := os.Stat(filepath.Join(held.path, "000000.ltx")); err != nil {
		t.Errorf("download directory of a running restore: %v, want it kept", err)
	}
}
