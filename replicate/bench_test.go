package replicate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/memstore"
	"github.com/walsync/walsync/internal/wal"

	"github.com/superfly/ltx"
)

// benchPageSize is the page size of the generated WALs: SQLite's default.
const benchPageSize = 4096

// benchPage returns a page that looks like a table leaf: half random
// bytes (row data, which LZ4 cannot compress) and half zeros (free space).
func benchPage(rng *rand.Rand, pageSize int) []byte {
	p := make([]byte, pageSize)
	for i := 0; i < pageSize/2; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], rng.Uint64())
	}
	return p
}

// benchWAL returns a WAL of frames frames in transactions of txnFrames
// frames each, touching pages 1..pages in turn (so later transactions
// rewrite earlier pages, as an append-heavy table does).
func benchWAL(frames, txnFrames, pages int) []byte {
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	b := wal.NewBuilder(benchPageSize, false, 0x1234, 0x5678)
	for i := range frames {
		commit := uint32(0)
		if (i+1)%txnFrames == 0 || i == frames-1 {
			commit = uint32(pages)
		}
		b.FrameWith(uint32(i%pages)+1, commit, benchPage(rng, benchPageSize))
	}
	return b.Bytes()
}

// walSizes are the WALs the benchmarks run over: one small transaction
// (a typical sync of a lightly written database) and a busy second.
var walSizes = []struct {
	name                     string
	frames, txnFrames, pages int
}{
	{"1frame", 1, 1, 1},
	{"100frames", 100, 10, 40},
	{"1000frames", 1000, 10, 400},
}

func BenchmarkWALReader(b *testing.B) {
	for _, sz := range walSizes {
		b.Run(sz.name, func(b *testing.B) {
			w := benchWAL(sz.frames, sz.txnFrames, sz.pages)
			b.ReportAllocs()
			b.SetBytes(int64(len(w)))
			for b.Loop() {
				rd, err := wal.NewReader(bytes.NewReader(w))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					_, _, err := rd.Next()
					if errors.Is(err, io.EOF) {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != sz.frames {
					b.Fatalf("frames = %d, want %d", n, sz.frames)
				}
			}
		})
	}
}

// BenchmarkEncodeSegment measures capture: scanning the committed frames
// and encoding them as one LTX segment (bytes are WAL bytes).
func BenchmarkEncodeSegment(b *testing.B) {
	ts := time.Unix(1_700_000_000, 0)
	for _, sz := range walSizes {
		b.Run(sz.name, func(b *testing.B) {
			w := benchWAL(sz.frames, sz.txnFrames, sz.pages)
			hdr, err := wal.ParseHeader(w)
			if err != nil {
				b.Fatal(err)
			}
			r := bytes.NewReader(w)
			var out bytes.Buffer
			b.ReportAllocs()
			b.SetBytes(int64(len(w) - wal.HeaderSize))
			for b.Loop() {
				scan, err := scanWAL(r, hdr, hdr.Start(), 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				out.Reset()
				if err := encodeSegment(&out, scan, 1, ts, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out.Len()), "segment-bytes")
		})
	}
}

// BenchmarkApplyFile measures restore: downloading one encoded segment
// from a Storage into a temporary file, verifying it and merging its pages
// into the output file (bytes are page bytes written).
func BenchmarkApplyFile(b *testing.B) {
	ctx := context.Background()
	ts := time.Unix(1_700_000_000, 0)
	for _, sz := range walSizes {
		b.Run(sz.name, func(b *testing.B) {
			w := benchWAL(sz.frames, sz.txnFrames, sz.pages)
			hdr, err := wal.ParseHeader(w)
			if err != nil {
				b.Fatal(err)
			}
			scan, err := scanWAL(bytes.NewReader(w), hdr, hdr.Start(), 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			var seg bytes.Buffer
			if err := encodeSegment(&seg, scan, 1, ts, nil); err != nil {
				b.Fatal(err)
			}
			store := memstore.New()
			lf := ltxFile{level: SegmentLevel, minTXID: 1, maxTXID: 1, key: ltxKey("bench.db", SegmentLevel, 1, 1), size: int64(seg.Len())}
			if err := store.Put(ctx, lf.key, bytes.NewReader(seg.Bytes()), int64(seg.Len()), nil); err != nil {
				b.Fatal(err)
			}
			f, err := os.Create(filepath.Join(b.TempDir(), "out.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			dir := b.TempDir()
			b.ReportAllocs()
			b.SetBytes(int64(len(scan.pages)) * benchPageSize)
			for b.Loop() {
				fe := &fetcher{store: newRestoreStore(store, 1), dir: dir, concurrency: 1}
				got, err := fe.fetch(ctx, 0, lf)
				if err != nil {
					b.Fatal(err)
				}
				if err := mergeFiles(ctx, f, []fetched{got}, []uint32{0}); err != nil {
					b.Fatal(err)
				}
				os.Remove(got.path)
				if h := got.hdr; h.Commit != uint32(sz.pages) {
					b.Fatalf("commit = %d, want %d", h.Commit, sz.pages)
				}
			}
		})
	}
}

// encodeSmallSegment runs the upload path of one sync of a 1-frame
// transaction: scan, encode into a spool, Put. It is shared by the
// allocation budget test.
func encodeSmallSegment(ctx context.Context, r io.ReaderAt, hdr wal.Header, store *memstore.Store, key string, ts time.Time) error {
	scan, err := scanWAL(r, hdr, hdr.Start(), 0, 0)
	if err != nil {
		return err
	}
	sp := newSpool("")
	defer sp.Close()
	if err := encodeSegment(sp, scan, ltx.TXID(1), ts, nil); err != nil {
		return err
	}
	rd, err := sp.Reader()
	if err != nil {
		return err
	}
	store.Delete(ctx, key)
	if err := store.Put(ctx, key, rd, sp.Size(), map[string]string{MetaTimestamp: ts.Format(time.RFC3339Nano)}); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}
