package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
)

var outageRounds = flag.Int("outage.rounds", 150, "TestOutageWatch: write rounds during the outage (about 0.1 s each; 6000 for a 10-minute outage)")

// TestOutageWatch: the S3 target goes down (every connection reset) while a
// sqlite3 process keeps writing. walsync keeps capturing into its local
// spool and hands the WAL over as usual, so the application's WAL stays
// bounded and walsync's memory flat however long the outage; when the
// target is back, everything committed reaches it and restores. Before,
// walsync kept the WAL pinned until its segments were uploaded, and kept
// them in memory: both grew for as long as the outage lasted.
func TestOutageWatch(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	p := faultproxy.New(t, endpoint)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	target := s3URL(p.URL(), bucket, "outage")
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, filepath.Join(dir, "watch.log"), "-b", target, "--name", "app",
		"--sync-interval", "100ms", "--checkpoint-frames", "200", "--spool-dir", spool, db)

	// The application: one long-lived connection, with a busy timeout as
	// applications should have (README).
	app := startSQLite(t, db)
	if err := app.exec(".timeout 5000\n"); err != nil {
		t.Fatal(err)
	}
	insert := func(round int) {
		t.Helper()
		sql := fmt.Sprintf("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 10) INSERT INTO t(n, v) SELECT %d, randomblob(2000) FROM c;\nPRAGMA wal_checkpoint(PASSIVE);\n", round)
		if err := app.exec(sql); err != nil {
			t.Fatal(err)
		}
	}
	insert(0)
	waitLive(t, target, "app", "SELECT count(*) FROM t;", "10\n", time.Minute)

	p.SetDown(true)
	rounds := *outageRounds
	var walMax int64
	var rss []int64
	for round := 1; round <= rounds; round++ {
		insert(round)
		// Pace the writer as an application would; the assertions do not
		// depend on the pace.
		time.Sleep(100 * time.Millisecond)
		if fi, err := os.Stat(db + "-wal"); err == nil {
			walMax = max(walMax, fi.Size())
		}
		if round%10 == 0 {
			rss = append(rss, vmRSS(t, w.cmd.Process.Pid))
		}
	}
	rows := rounds*10 + 10
	written := int64(rounds) * 10 * 2000
	t.Logf("outage: %d rounds, %d KiB written, WAL max %d KiB, walsync RSS (KiB, every 10 rounds) %v", rounds, written>>10, walMax>>10, rss)
	// Without walsync the WAL would restart at each checkpoint; with the
	// hand-over every 200 frames it stays within a few of them.
	if limit := int64(4 << 20); walMax > limit || walMax > written/2 {
		t.Errorf("application's WAL reached %d bytes during the outage (%d written), want at most %d", walMax, written, min(limit, written/2))
	}
	base := rss[len(rss)/5] // after the first fifth: what the outage itself costs
	if peak := slicesMax(rss[len(rss)/5:]); peak > base+3<<10 {
		t.Errorf("walsync's RSS grew from %d to %d KiB during the outage, want flat (within 3 MiB)", base, peak)
	}
	if !strings.Contains(tail(w.log), "spooling changes locally") && countLines(readFile(t, w.log), "spooling changes locally") == 0 {
		t.Errorf("the outage was not logged:\n%s", tail(w.log))
	}

	p.SetDown(false)
	waitLive(t, target, "app", "SELECT count(*) FROM t;", fmt.Sprintf("%d\n", rows), 2*time.Minute)
	if err := app.close(); err != nil {
		t.Fatal(err)
	}
	w.stop()
	if countLines(readFile(t, w.log), "target reachable again") == 0 {
		t.Errorf("the recovery was not logged:\n%s", tail(w.log))
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	mustRun(t, "restore", "-b", target, "-o", out, "app")
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatal("restored database differs from the source")
	}
}

// vmRSS returns the resident set of process pid in KiB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

func slicesMax(s []int64) int64 {
	m := s[0]
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var faultSeed = flag.Uint64("faults.seed", 0, "TestFaultsWatch: seed of the faults (0: random, printed)")

// TestFaultsWatch: a real walsync watch writes through the fault proxy
// while every kind of fault strikes its requests at random (seeded): 500s
// and 503s, resets before and after the server stored an object, stalled
// request and response bodies, truncated and corrupted answers, and short
// outages. A sqlite3 process writes throughout. Once the faults stop,
// everything committed reaches the target, the restore equals the source,
// and walsync exits 0: nothing lost, nothing wrong.
func TestFaultsWatch(t *testing.T) {
	seed := *faultSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("faults: seed %d (reproduce with -run '^TestFaultsWatch$' ./cmd/walsync -args -faults.seed=%d)", seed, seed)
	endpoint, bucket := testenv.S3(t)
	p := faultproxy.New(t, endpoint)
	p.SetSeed(seed)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	createDB(t, db)
	target := s3URL(p.URL(), bucket, "faults") + "&idle-timeout=1s"
	w := startWatch(t, filepath.Join(dir, "watch.log"), "-b", target, "--name", "app",
		"--sync-interval", "100ms", "--checkpoint-frames", "100", "--spool-dir", dir, db)

	for _, r := range []faultproxy.Rule{
		{Method: "PUT", Rate: 0.15, Fault: faultproxy.Status, Status: 500},
		{Method: "PUT", Rate: 0.10, Fault: faultproxy.Status},
		{Method: "PUT", Rate: 0.10, Fault: faultproxy.ResetBefore},
		{Method: "PUT", Rate: 0.10, Fault: faultproxy.ResetAfter},
		{Method: "PUT", Rate: 0.05, Fault: faultproxy.StallRequest, At: 100, Stall: 3 * time.Second},
		{Method: "GET", Rate: 0.10, Fault: faultproxy.Truncate, At: 50},
		{Method: "GET", Rate: 0.10, Fault: faultproxy.Corrupt, At: 60},
		{Method: "GET", Rate: 0.05, Fault: faultproxy.StallResponse, At: 10, Stall: 3 * time.Second},
		{Method: "HEAD", Rate: 0.10, Fault: faultproxy.Status},
		{Rate: 0.05, Latency: 200 * time.Millisecond},
	} {
		p.Add(r)
	}
	app := startSQLite(t, db)
	if err := app.exec(".timeout 5000\n"); err != nil {
		t.Fatal(err)
	}
	rounds := 120
	for round := 1; round <= rounds; round++ {
		sql := fmt.Sprintf("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 10) INSERT INTO t(n, v) SELECT %d, randomblob(1500) FROM c;\n", round)
		if round%7 == 0 {
			sql += "PRAGMA wal_checkpoint(PASSIVE);\n"
		}
		if err := app.exec(sql); err != nil {
			t.Fatal(err)
		}
		switch round {
		case 40, 90: // a short outage: every connection reset
			p.SetDown(true)
		case 50, 100:
			p.SetDown(false)
		}
		time.Sleep(50 * time.Millisecond) // the writer's pace, not a synchronisation
	}
	p.Clear()
	t.Logf("faults injected: %d of %d requests", p.Injected(), p.Count(""))
	if p.Injected() == 0 {
		t.Fatal("no fault was injected")
	}
	waitLive(t, target, "app", "SELECT count(*) FROM t;", fmt.Sprintf("%d\n", rounds*10), 2*time.Minute)
	if err := app.close(); err != nil {
		t.Fatal(err)
	}
	w.stop()
	out := filepath.Join(t.TempDir(), "restored.db")
	mustRun(t, "restore", "-b", target, "-o", out, "app")
	if got, want := dump(t, out), dump(t, db); got != want {
		t.Fatal("restored database differs from the source")
	}
}
