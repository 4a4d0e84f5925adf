package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/replicate"
)

// chainBackup replicates a database with a snapshot and n segments of 40
// rows each into store, and returns the keys of the segments in TXID order.
func chainBackup(t *testing.T, store replicate.Storage, name string, n int) []string {
	t.Helper()
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "src.db")
	sqlite(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
	r := replicate.New(store, replicate.Options{SyncInterval: replicate.SyncImmediately})
	defer r.Close()
	if _, err := r.Add(ctx, db, name); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for range n {
		sqlite(t, db, ".timeout 5000\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 40) INSERT INTO t(v) SELECT randomblob(300) FROM c;")
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var segs []string
	for obj, err := range store.List(ctx, name+"/0000/", "") {
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, obj.Key)
	}
	if len(segs) != n {
		t.Fatalf("%d segments, want %d", len(segs), n)
	}
	return segs
}

// restoreRefused restores name with opts and requires an error matching
// target that names key, and an output directory left empty.
func restoreRefused(t *testing.T, store replicate.Storage, name string, opts replicate.RestoreOptions, target error, key string) {
	t.Helper()
	dir := t.TempDir()
	res, err := replicate.Restore(context.Background(), store, name, filepath.Join(dir, "out.db"), opts)
	if !errors.Is(err, target) {
		t.Fatalf("Restore(%+v) = %+v, %v; want %v", opts, res, err, target)
	}
	if msg := err.Error(); !strings.Contains(msg, key) || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line naming %s", msg, key)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("output directory holds %v after a refused restore", ents)
	}
}

// TestRestoreGap: with a middle segment deleted, every kind of target
// beyond the gap is refused (today the far-future timestamp restored the
// state at the gap and exited 0), against a real S3 server.
func TestRestoreGap(t *testing.T) {
	store := s3Store(t)
	segs := chainBackup(t, store, "gap", 5)
	if err := store.Delete(context.Background(), segs[2]); err != nil {
		t.Fatal(err)
	}
	_, txid4, _ := ltx.ParseFilename(filepath.Base(segs[3]))
	restoreRefused(t, store, "gap", replicate.RestoreOptions{}, replicate.ErrNotRestorable, "gap")
	restoreRefused(t, store, "gap", replicate.RestoreOptions{TXID: txid4}, replicate.ErrNotRestorable, "gap")
	restoreRefused(t, store, "gap", replicate.RestoreOptions{Timestamp: time.Now().Add(24 * time.Hour)},
		replicate.ErrNotRestorable, segs[3])

	// Before the gap, every target still restores.
	_, txid2, _ := ltx.ParseFilename(filepath.Base(segs[1]))
	for _, opts := range []replicate.RestoreOptions{{TXID: txid2}} {
		if _, err := replicate.Restore(context.Background(), store, "gap", filepath.Join(t.TempDir(), "ok.db"), opts); err != nil {
			t.Errorf("Restore(%+v) before the gap: %v", opts, err)
		}
	}
}

// TestRestoreForgedCompaction: a valid LTX file at level 1 claiming the
// TXIDs of segments 1-5 but holding only segment 1's pages reaches
// furthest, and was restored (exit 0, 40 of 200 rows). It disagrees with
// the segment that really ends at its last TXID, so the restore refuses.
func TestRestoreForgedCompaction(t *testing.T) {
	ctx := context.Background()
	store := s3Store(t)
	segs := chainBackup(t, store, "forged", 5)
	lo, _, _ := ltx.ParseFilename(filepath.Base(segs[0]))
	_, hi, _ := ltx.ParseFilename(filepath.Base(segs[4]))
	forged := forgeRange(t, store, segs[0], lo, hi)
	key := fmt.Sprintf("forged/0001/%s", ltx.FormatFilename(lo, hi))
	if err := store.Put(ctx, key, bytes.NewReader(forged), int64(len(forged)), nil); err != nil {
		t.Fatal(err)
	}
	restoreRefused(t, store, "forged", replicate.RestoreOptions{}, replicate.ErrChainBroken, key)
	restoreRefused(t, store, "forged", replicate.RestoreOptions{TXID: hi}, replicate.ErrChainBroken, key)
}

// forgeRange re-encodes the LTX file at key with the TXID range lo-hi and
// everything else unchanged: a well-formed file with a valid checksum.
func forgeRange(t *testing.T, store replicate.Storage, key string, lo, hi ltx.TXID) []byte {
	t.Helper()
	rc, err := store.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	dec := ltx.NewDecoder(rc)
	if err := dec.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	hdr := dec.Header()
	hdr.MinTXID, hdr.MaxTXID = lo, hi
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if err := enc.EncodePage(ph, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := dec.Close(); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// midBodyFaults is a Storage whose Get bodies fail once per object after
// cut bytes, as a connection reset mid-body does, and that counts the
// range GETs that resumed.
type midBodyFaults struct {
	replicate.Storage
	cut     int64
	mu      sync.Mutex
	failed  map[string]bool
	resumed int
}

func (s *midBodyFaults) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Storage.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if off > 0 {
		s.resumed++
	}
	if n >= 0 || s.failed[key] {
		return rc, nil
	}
	s.failed[key] = true
	return &failAfter{ReadCloser: rc, left: s.cut}, nil
}

// failAfter returns a reset error after left bytes.
type failAfter struct {
	io.ReadCloser
	left int64
}

func (r *failAfter) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, errors.New("read tcp 127.0.0.1:9000: connection reset by peer")
	}
	n, err := r.ReadCloser.Read(p[:min(int64(len(p)), r.left)])
	r.left -= int64(n)
	return n, err
}

// TestRestoreResumesGet: every object's first GET fails mid-body; the
// restore resumes each from where it stopped and restores the source
// exactly, against a real S3 server. (On main the restore failed.)
func TestRestoreResumesGet(t *testing.T) {
	store := s3Store(t)
	chainBackup(t, store, "resume", 3)
	faults := &midBodyFaults{Storage: store, cut: 150, failed: map[string]bool{}}
	out := filepath.Join(t.TempDir(), "out.db")
	res, err := replicate.Restore(context.Background(), faults, "resume", out, replicate.RestoreOptions{})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got, want := faults.resumed, res.Files; got != want {
		t.Errorf("%d resumed GETs, want %d (one per file)", got, want)
	}
	if got, want := sqlite(t, out, "SELECT count(*) FROM t;"), "120\n"; got != want {
		t.Errorf("restored %q rows, want %q", got, want)
	}
}
