package replicate_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/replicate"
)

// Flags of the restore benchmarks: the latency latencyStore adds to every
// request, and the bandwidth of one GET body (0: unlimited).
var (
	restoreLatency   = flag.Duration("restore-latency", 20*time.Millisecond, "latency of each request in the restore benchmarks")
	restoreBandwidth = flag.Int("restore-stream-mbps", 0, "bandwidth of one GET body in the restore benchmarks, MB/s (0: unlimited)")
)

// latencyStore adds a fixed latency to every request, as an S3 round trip
// does (the first byte of a GET arrives after it), and limits each GET
// body to bw bytes per second if bw > 0, as one S3 connection is.
type latencyStore struct {
	replicate.Storage
	d  time.Duration
	bw int64
}

func newLatencyStore(s replicate.Storage) latencyStore {
	return latencyStore{Storage: s, d: *restoreLatency, bw: int64(*restoreBandwidth) * 1e6}
}

// throttled is a GET body read at most bw bytes per second.
type throttled struct {
	io.ReadCloser
	ctx   context.Context
	bw    int64
	start time.Time
	n     int64
}

func (r *throttled) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n += int64(n)
	if ahead := time.Duration(r.n*int64(time.Second)/r.bw) - time.Since(r.start); ahead > 0 {
		t := time.NewTimer(ahead)
		select {
		case <-r.ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return n, err
}

func (s latencyStore) wait(ctx context.Context) error {
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s latencyStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	rc, err := s.Storage.Get(ctx, key, off, n)
	if err != nil || s.bw <= 0 {
		return rc, err
	}
	return &throttled{ReadCloser: rc, ctx: ctx, bw: s.bw, start: time.Now()}, nil
}

func (s latencyStore) Head(ctx context.Context, key string) (replicate.ObjectInfo, error) {
	if err := s.wait(ctx); err != nil {
		return replicate.ObjectInfo{}, err
	}
	return s.Storage.Head(ctx, key)
}

func (s latencyStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[replicate.ObjectInfo, error] {
	return func(yield func(replicate.ObjectInfo, error) bool) {
		if err := s.wait(ctx); err != nil {
			yield(replicate.ObjectInfo{}, err)
			return
		}
		for o, err := range s.Storage.List(ctx, prefix, startAfter) {
			if !yield(o, err) {
				return
			}
		}
	}
}

const benchRestorePageSize = 4096

// benchPage fills b with the content of page pgno at TXID tx.
func benchPage(b []byte, pgno uint32, tx ltx.TXID) {
	r := rand.New(rand.NewPCG(uint64(pgno), uint64(tx)))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
}

// encodeBench writes an LTX file of the pages pages (ascending) at TXID
// tx's content.
func encodeBench(w io.Writer, lo, hi ltx.TXID, commit uint32, pages iter.Seq[uint32]) error {
	enc, err := ltx.NewEncoder(w)
	if err != nil {
		return err
	}
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: benchRestorePageSize,
		Commit: commit, MinTXID: lo, MaxTXID: hi, Timestamp: 1_700_000_000_000 + int64(hi)}); err != nil {
		return err
	}
	data := make([]byte, benchRestorePageSize)
	for pgno := range pages {
		benchPage(data, pgno, hi)
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
			return err
		}
	}
	return enc.Close()
}

func benchKey(level int, lo, hi ltx.TXID) string {
	return fmt.Sprintf("db/%04x/%s", level, ltx.FormatFilename(lo, hi))
}

// benchHistory puts into store a snapshot (TXID 1) of dbPages pages, then
// per level (3, 2, 1, 0) counts[i] files of spans[i] TXIDs each, one after
// another; every TXID rewrites 8 random pages. Compacted files are made
// from their segments with ltx.Compactor; allL0 also stores the segments
// they were made from (as before retention deletes them).
func benchHistory(b *testing.B, store replicate.Storage, dbPages uint32, counts, spans [4]int, allL0 bool) {
	ctx := context.Background()
	put := func(key string, data []byte) {
		if err := store.Put(ctx, key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
			b.Fatal(err)
		}
	}
	var snap bytes.Buffer
	if err := encodeBench(&snap, 1, 1, dbPages, func(yield func(uint32) bool) {
		for p := uint32(1); p <= dbPages && yield(p); p++ {
		}
	}); err != nil {
		b.Fatal(err)
	}
	put(benchKey(9, 1, 1), snap.Bytes())
	segment := func(tx ltx.TXID) []byte {
		rng := rand.New(rand.NewPCG(uint64(tx), 0))
		set := map[uint32]bool{}
		for range 8 {
			set[1+uint32(rng.IntN(int(dbPages)))] = true
		}
		var buf bytes.Buffer
		if err := encodeBench(&buf, tx, tx, dbPages, func(yield func(uint32) bool) {
			for p := uint32(1); p <= dbPages; p++ {
				if set[p] && !yield(p) {
					return
				}
			}
		}); err != nil {
			b.Fatal(err)
		}
		return buf.Bytes()
	}
	tx := ltx.TXID(2)
	for i, level := range []int{3, 2, 1, 0} {
		for range counts[i] {
			lo, hi := tx, tx+ltx.TXID(spans[i])-1
			if level == 0 {
				put(benchKey(0, lo, hi), segment(lo))
			} else {
				var rdrs []io.Reader
				for t := lo; t <= hi; t++ {
					seg := segment(t)
					if allL0 {
						put(benchKey(0, t, t), seg)
					}
					rdrs = append(rdrs, bytes.NewReader(seg))
				}
				var buf bytes.Buffer
				c, err := ltx.NewCompactor(&buf, rdrs)
				if err != nil {
					b.Fatal(err)
				}
				c.HeaderFlags = ltx.HeaderFlagNoChecksum
				if err := c.Compact(ctx); err != nil {
					b.Fatal(err)
				}
				put(benchKey(level, lo, hi), buf.Bytes())
			}
			tx = hi + 1
		}
	}
}

// BenchmarkRestore restores a history through a store that adds
// -restore-latency (20 ms) to every request (and limits each GET body to
// -restore-stream-mbps): a snapshot and 300 segments, and a compacted
// day's newest state (a snapshot, 24 L3, 11 L2, 9 L1 and 30 L0 files),
// each over an 8 MiB database (2,048 pages of 4 KiB). "Timestamp" is the
// same day with every segment still stored, restored as of the newest
// segment's time: the finest chain is then 353 segments.
func BenchmarkRestore(b *testing.B) {
	day := [2][4]int{{24, 11, 9, 30}, {12, 6, 3, 1}}
	for _, c := range []struct {
		name          string
		counts, spans [4]int
		allL0         bool
		ts            bool
	}{
		{"Snapshot+300L0", [4]int{0, 0, 0, 300}, [4]int{1, 1, 1, 1}, false, false},
		{"Snapshot+24L3+11L2+9L1+30L0", day[0], day[1], false, false},
		{"Timestamp", day[0], day[1], true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			mem := memstore.New()
			benchHistory(b, mem, 2048, c.counts, c.spans, c.allL0)
			var opts replicate.RestoreOptions
			if c.ts {
				opts.Timestamp = time.UnixMilli(1_800_000_000_000)
			}
			benchRestore(b, newLatencyStore(mem), opts)
		})
	}
}

// BenchmarkRestoreBig restores one 256 MiB snapshot (65,536 incompressible
// pages) from a local-directory store with -restore-latency per request
// (and -restore-stream-mbps per GET body), and reports the peak RSS and the peak heap in use during the restore.
func BenchmarkRestoreBig(b *testing.B) {
	dir := b.TempDir()
	store, err := dirstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		b.Fatal(err)
	}
	const pages = 256 << 20 / benchRestorePageSize
	f, err := os.Create(filepath.Join(dir, "snap.ltx"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lock := ltx.LockPgno(benchRestorePageSize)
	if err := encodeBench(f, 1, 1, pages, func(yield func(uint32) bool) {
		for p := uint32(1); p <= pages; p++ {
			if p != lock && !yield(p) {
				return
			}
		}
	}); err != nil {
		b.Fatal(err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	if err := store.Put(context.Background(), benchKey(9, 1, 1), f, size, nil); err != nil {
		b.Fatal(err)
	}
	benchRestore(b, newLatencyStore(store), replicate.RestoreOptions{})
}

// benchRestore restores "db" from store at each iteration and reports the
// files restored, the peak RSS of the process (the store included when it
// is in memory) and the peak growth of the heap in use over the heap before
// the restore.
func benchRestore(b *testing.B, store replicate.Storage, opts replicate.RestoreOptions) {
	out := filepath.Join(b.TempDir(), "out.db")
	var peakRSS, peakHeap uint64
	var res replicate.RestoreResult
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM
		var heap uint64
		stop := samplePeakHeap(&heap)
		var err error
		opts.Force, opts.Check = true, replicate.IntegrityNone
		res, err = replicate.Restore(context.Background(), store, "db", out, opts)
		stop()
		if err != nil {
			b.Fatal(err)
		}
		peakRSS = max(peakRSS, vmHWM(b))
		peakHeap = max(peakHeap, heap-min(heap, ms.HeapInuse))
	}
	b.SetBytes(int64(res.Pages) * int64(res.PageSize))
	b.ReportMetric(float64(res.Files), "files")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "heap-growth-MiB")
}

// samplePeakHeap records the largest heap in use into peak every
// millisecond until stop is called.
func samplePeakHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			*peak = max(*peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// vmHWM returns the process's peak resident set size since the last reset.
func vmHWM(b *testing.B) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
