package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/ltxenc"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
)

// allDBs is the number of databases TestRestoreAllMany restores; the
// figures in docs/operations.md are for 1,000.
var allDBs = flag.Int("all.dbs", 1000, "databases restored by TestRestoreAllMany")

// allConcurrency is --concurrency of TestRestoreAllMany's restore; 0 for
// the default.
var allConcurrency = flag.Int("all.concurrency", 0, "restore --all --concurrency in TestRestoreAllMany (0: the default)")

// TestRestoreAllMany: `restore --all` of many small databases from
// versitygw. The backups are real snapshots: one SQLite file made by the
// sqlite3 CLI holding a row "db-00000", patched for database i to name
// itself ("db-00042"), encoded as an LTX snapshot and uploaded with its
// SHA-256. Every output must be restored, byte for byte the patched file,
// and the row must name its database. Wall time and peak RSS are logged.
func TestRestoreAllMany(t *testing.T) {
	n := *allDBs
	endpoint, bucket := testenv.S3(t)
	url := s3URL(endpoint, bucket, "many")
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "template.db")
	sqlite(t, tmpl, "PRAGMA journal_mode=WAL;\nCREATE TABLE who(name TEXT);\nINSERT INTO who VALUES ('db-00000');\n")
	image, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if c := bytes.Count(image, []byte("db-00000")); c != 1 {
		t.Fatalf("template holds its row %d times, want once", c)
	}
	pageSize := uint32(binary.BigEndian.Uint16(image[16:18]))
	name := func(i int) string { return fmt.Sprintf("t%02d/db%05d.db", i%10, i) }
	imageOf := func(i int) []byte {
		return bytes.Replace(image, []byte("db-00000"), fmt.Appendf(nil, "db-%05d", i), 1)
	}

	store, err := openStorage(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ts := time.Now().UnixMilli()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			b, err := snapshotLTX(imageOf(i), pageSize, ts)
			if err == nil {
				sum := sha256.Sum256(b)
				err = store.Put(context.Background(), snapshotKey(name(i)), bytes.NewReader(b), int64(len(b)),
					map[string]string{replicate.MetaSHA256: hex.EncodeToString(sum[:])})
			}
			if err != nil {
				errs <- fmt.Errorf("%s: %w", name(i), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d snapshots uploaded in %v", n, time.Since(start).Round(time.Millisecond))

	out := filepath.Join(dir, "out")
	args := []string{"restore", "--all", "-b", url, "-o", out, "--json"}
	if *allConcurrency > 0 {
		args = append(args, "--concurrency", fmt.Sprint(*allConcurrency))
	}
	cmd := exec.Command(binPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start = time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("restore --all: %v; stderr:\n%s", err, stderr.String())
	}
	el := time.Since(start)
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	t.Logf("restore --all of %d databases (--concurrency %d, 0: default): %v, peak RSS %d KiB (binary built with -race unless WALSYNC_E2E_RACE=0)",
		n, *allConcurrency, el.Round(time.Millisecond), rss)

	got, sum := decodeRestoreAll(t, stdout.String())
	if sum.Databases != n || sum.Restored != n || len(got) != n {
		t.Fatalf("summary %+v, %d lines; want %d restored", sum, len(got), n)
	}
	for i := range n {
		p := filepath.Join(out, filepath.FromSlash(name(i)))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, imageOf(i)) {
			t.Errorf("%s: restored file differs from its source", name(i))
		}
	}
	for _, i := range []int{0, n / 2, n - 1} {
		p := filepath.Join(out, filepath.FromSlash(name(i)))
		if got, want := strings.TrimSpace(sqlite(t, p, "SELECT name FROM who;\n")), fmt.Sprintf("db-%05d", i); got != want {
			t.Errorf("%s: row %q, want %q", name(i), got, want)
		}
	}
}

// snapshotLTX encodes the database image as an LTX snapshot at TXID 1.
func snapshotLTX(image []byte, pageSize uint32, ts int64) ([]byte, error) {
	var buf bytes.Buffer
	pages := uint32(len(image)) / pageSize
	lw, err := ltxenc.NewWriter(&buf, ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: pageSize,
		Commit: pages, MinTXID: 1, MaxTXID: 1, Timestamp: ts})
	if err != nil {
		return nil, err
	}
	defer lw.Release()
	for p := range pages {
		if err := lw.Page(p+1, image[p*pageSize:(p+1)*pageSize]); err != nil {
			return nil, err
		}
	}
	if err := lw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
