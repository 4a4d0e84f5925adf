// Command peersuite runs ncruces/go-sqlite3's own VFS test suites (mptest,
// speedtest1, and the WAL stress, WAL-index and torn-write tests of
// vfs/tests) against the walsync VFS, then checks that the target holds a
// restorable backup of the databases they wrote.
//
// Those suites use the module's internal packages, so they only run from
// inside a copy of the module: peersuite copies the go-sqlite3 version
// walsync requires from the module cache into ~/.cache/walsync/peersuite/,
// makes it require walsync (replaced by this repository), makes the walsync
// VFS the default VFS of the copy, and adds internal/peersuite/hook to each
// suite (see its package documentation for what is registered).
//
// Usage, from the repository:
//
//	go run ./internal/peersuite                # the quick set (test.sh)
//	go run ./internal/peersuite -full          # every suite and environment
//	go run ./internal/peersuite -compare 10    # speedtest1 plain vs walsync, 10 pairs
//
// It exits non-zero if a suite fails, a test skips, or no database restores.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	full := flag.Bool("full", false, "run every mptest environment and all three WAL stress rounds (about 10 minutes on 2 cores)")
	compare := flag.Int("compare", 0, "instead of the suites, run speedtest1 this many times alternately on the plain and the walsync VFS")
	size := flag.Int("size", 0, "speedtest1 --size (default: 10 for the suites, 50 for -compare)")
	interval := flag.Duration("sync-interval", time.Second, "walsync sync interval for -compare (the suites use 0)")
	profDir := flag.String("profile-dir", "", "with -compare: write CPU and allocation profiles of each run here")
	keep := flag.Bool("keep", false, "keep the target directory and logs")
	flag.Parse()
	if err := run(*full, *compare, *size, *interval, *profDir, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "peersuite:", err)
		os.Exit(1)
	}
}

func run(full bool, pairs, size int, interval time.Duration, profDir string, keep bool) error {
	repo, err := goOutput(".", "env", "GOMOD")
	if err != nil {
		return err
	}
	if !strings.HasSuffix(repo, "go.mod") {
		return fmt.Errorf("run from inside the walsync module (GOMOD=%q)", repo)
	}
	repo = filepath.Dir(repo)
	home, err := os.UserCacheDir()
	if err != nil {
		return err
	}
	start := time.Now()
	quick := !full && pairs == 0
	c, err := prepare(repo, filepath.Join(home, "walsync", "peersuite"), quick)
	if err != nil {
		return err
	}
	defer c.close()
	fmt.Printf("peersuite: %s prepared in %.1fs\n", c.dir, time.Since(start).Seconds())
	if quick {
		fmt.Println("peersuite: quick set: mptest in WAL mode, one round of the WAL stress test (-full for all)")
	}

	work, err := os.MkdirTemp("", "walsync-peersuite-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Printf("peersuite: target and logs kept in %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}

	if pairs > 0 {
		if size == 0 {
			size = 50
		}
		return compareSpeedtest(c.dir, work, pairs, size, interval, profDir)
	}
	if size == 0 {
		size = 10
	}
	target := filepath.Join(work, "target")
	var failed []string
	for _, s := range suites(full, size) {
		if err := s.run(c.dir, work, target); err != nil {
			fmt.Printf("peersuite: FAIL %s: %v\n", s.name, err)
			failed = append(failed, s.name)
		}
	}
	restored, err := verifyTarget(context.Background(), target)
	if err != nil {
		failed = append(failed, "restore: "+err.Error())
	}
	fmt.Printf("peersuite: %d databases restored from the target and integrity-checked\n", restored)
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, "; "))
	}
	fmt.Printf("peersuite: all passed in %.0fs\n", time.Since(start).Seconds())
	return nil
}
