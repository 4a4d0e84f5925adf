package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// litestreamEnv is the environment for a Litestream process: the test
// server's credentials, no CA bundle (Litestream v0.5.18 fails to start
// with AWS_CA_BUNDLE set) and no instance-metadata probing.
func litestreamEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	return append(env,
		"LITESTREAM_ACCESS_KEY_ID="+testenv.AccessKeyID,
		"LITESTREAM_SECRET_ACCESS_KEY="+testenv.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true")
}

func litestreamURL(endpoint, bucket, path string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&forcePathStyle=true", bucket, path, endpoint, testenv.Region)
}

// TestLitestreamRestoresWalsync: a backup written by walsync is restored by
// `litestream restore` v0.5.18.
func TestLitestreamRestoresWalsync(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	litestream := testenv.Litestream(t)
	db := filepath.Join(t.TempDir(), "app.db")
	createDB(t, db)
	w := startWatch(t, filepath.Join(t.TempDir(), "watch.log"), "-b", s3URL(endpoint, bucket, "ws"), "--name", "app.db",
		"--sync-interval", "50ms", "--checkpoint-frames", "100", db)
	writeLoad(t, db, 0, 300, 7)
	w.stop()

	out := filepath.Join(t.TempDir(), "restored.db")
	cmd := exec.Command(litestream, "restore", "-o", out, litestreamURL(endpoint, bucket, "ws/app.db"))
	cmd.Env = litestreamEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litestream restore: %v\n%s", err, b)
	}
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatal("litestream's restore of a walsync backup differs from the source")
	}
}

// TestWalsyncRestoresLitestream: a backup written by `litestream
// replicate` v0.5.18 is restored by walsync.
func TestWalsyncRestoresLitestream(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	litestream := testenv.Litestream(t)
	db := filepath.Join(t.TempDir(), "app.db")
	createDB(t, db)
	cmd := exec.Command(litestream, "replicate", db, litestreamURL(endpoint, bucket, "ls/app.db"))
	cmd.Env = litestreamEnv()
	logPath := filepath.Join(t.TempDir(), "litestream.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	for i := range 6 {
		writeLoad(t, db, i*50, 50, 8)
		time.Sleep(300 * time.Millisecond) // pace the load across Litestream's 1s syncs
	}
	// Litestream reports nothing when it has caught up: restore until the
	// result equals the source, within a minute.
	want := dump(t, db)
	out := filepath.Join(t.TempDir(), "restored.db")
	var last result
	waitFor(t, func() bool {
		os.Remove(out)
		last = run(t, "restore", "app.db", "-b", s3URL(endpoint, bucket, "ls"), "-o", out)
		return last.code == 0 && dump(t, out) == want
	})
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("litestream did not stop; log:\n%s", tail(logPath))
	}
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatalf("walsync restore of a Litestream backup differs from the source; litestream log:\n%s", tail(logPath))
	}
}

// levelCounts lists the target under prefix and counts the LTX files of
// each level ("0000" ... "0009").
func levelCounts(t *testing.T, url, prefix string) map[string]int {
	t.Helper()
	store, err := openExistingStorage(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for obj, err := range store.List(context.Background(), prefix, "") {
		if err != nil {
			t.Fatal(err)
		}
		rest := strings.TrimPrefix(obj.Key, prefix)
		if level, _, ok := strings.Cut(rest, "/"); ok && strings.HasSuffix(obj.Key, ".ltx") {
			counts[level]++
		}
	}
	return counts
}

// TestLitestreamRestoresCompacted: a backup that walsync compacted into
// levels 1 to 3, its compacted segments deleted, is restored by stock
// `litestream restore` v0.5.18 and by walsync, both equal to the source.
func TestLitestreamRestoresCompacted(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	litestream := testenv.Litestream(t)
	db := filepath.Join(t.TempDir(), "app.db")
	createDB(t, db)
	url := s3URL(endpoint, bucket, "wc")
	w := startWatch(t, filepath.Join(t.TempDir(), "watch.log"), "-b", url, "--name", "app.db",
		"--sync-interval", "50ms", "--checkpoint-frames", "100",
		"--compaction-intervals", "1s,2s,4s", "--l0-retention", "1s", db)
	writeLoad(t, db, 0, 100, 11)
	// Every level holds a file, and the segments level 1 covers are gone:
	// the writes below then land in levels 1..3 at their boundaries.
	waitFor(t, func() bool {
		c := levelCounts(t, url, "app.db/")
		return c["0001"] > 0 && c["0002"] > 0 && c["0003"] > 0
	})
	writeLoad(t, db, 100, 200, 12)
	var counts map[string]int
	waitFor(t, func() bool {
		counts = levelCounts(t, url, "app.db/")
		return counts["0003"] >= 2 && counts["0000"] <= 2
	})
	w.stop()
	t.Logf("files by level: %v", counts)

	out := filepath.Join(t.TempDir(), "restored.db")
	cmd := exec.Command(litestream, "restore", "-o", out, litestreamURL(endpoint, bucket, "wc/app.db"))
	cmd.Env = litestreamEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litestream restore: %v\n%s", err, b)
	}
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatal("litestream's restore of a compacted walsync backup differs from the source")
	}
	out2 := filepath.Join(t.TempDir(), "restored2.db")
	mustRun(t, "restore", "app.db", "-b", url, "-o", out2)
	if got, want := dump(t, out2), dump(t, db); got != want {
		t.Fatal("walsync's restore of its compacted backup differs from the source")
	}
}
