package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// suite is one `go test` run inside the copy.
type suite struct {
	name string
	pkg  string   // package directory in the copy
	args []string // go test arguments after -count=1 -v
	// benchmark: the suite is speedtest1, which ends each benchmark with a
	// skip when the program exits 0; success is its TOTAL line instead.
	benchmark bool
}

// suites returns the suites to run. The quick set (test.sh) runs the
// mptest environments that replicate (WAL mode: plain, Adiantum, XTS);
// full adds the rollback-journal, memdb and MVCC environments, in which
// walsync only wraps the files (or not at all) since there is no WAL.
func suites(full bool, size int) []suite {
	mptest := `^Test_mptest$/_wal$`
	if full {
		mptest = `^Test_mptest$`
	}
	return []suite{
		{name: "mptest", pkg: "vfs/tests/mptest", args: []string{"-run", mptest, "-timeout", "30m"}},
		{
			name: "speedtest1", pkg: "vfs/tests/speedtest1", benchmark: true,
			args: []string{"-run", "^$", "-bench", "^Benchmark_speedtest1$", "-benchtime", strconv.Itoa(size) + "x",
				"-args", "--vfs", "walsync", "--journal", "wal"},
		},
		{name: "wal-tests", pkg: "vfs/tests", args: []string{"-run", "^(TestWALConcurrentWriters|TestWALShmRollbackCorruption|TestEncryptedWALTornReads)$", "-timeout", "30m"}},
	}
}

// run runs s with the hook replicating into target, prints what ran, and
// returns an error if the run failed, a test skipped or nothing ran.
func (s suite) run(module, work, target string) error {
	args := append([]string{"test", "-count=1", "-v"}, s.args...)
	fmt.Printf("peersuite: == %s: go %s (in %s)\n", s.name, strings.Join(args, " "), s.pkg)
	logPath := filepath.Join(work, s.name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join(module, s.pkg)
	cmd.Env = suiteEnv(target, "0")
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	runErr := cmd.Run()
	elapsed := time.Since(start)
	out, err := os.ReadFile(logPath)
	if err != nil {
		return err
	}
	res := parse(out)
	for _, l := range res.summary {
		fmt.Printf("peersuite:   %s\n", l)
	}
	fmt.Printf("peersuite:   %d passed, %d failed, %d skipped, %d walsync warnings in %.0fs (log: %s)\n",
		res.passed, res.failed, len(res.skips), res.warnings, elapsed.Seconds(), logPath)
	for _, w := range res.warningLines {
		fmt.Printf("peersuite:   %s\n", w)
	}
	switch {
	case runErr != nil:
		tail(out)
		return fmt.Errorf("go test: %w", runErr)
	case s.benchmark:
		if !res.total {
			tail(out)
			return fmt.Errorf("speedtest1 printed no TOTAL line")
		}
	case len(res.skips) > 0:
		return fmt.Errorf("skipped: %s", strings.Join(res.skips, ", "))
	case res.passed == 0:
		return fmt.Errorf("no test ran")
	}
	return nil
}

// suiteEnv is the environment of a suite: the hook's variables, the WAL
// stress test switched on, and nothing that makes ncruces' tests skip.
func suiteEnv(target, interval string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CI", "GOFLAGS", "WALSYNC_PEER_TARGET", "WALSYNC_PEER_SYNC_INTERVAL", "SQLITE3_TEST_WAL_STRESS":
			continue // CI makes mptest skip its slow script
		}
		env = append(env, kv)
	}
	return append(env,
		"WALSYNC_PEER_TARGET="+target,
		"WALSYNC_PEER_SYNC_INTERVAL="+interval,
		"SQLITE3_TEST_WAL_STRESS=1")
}

// result is what a `go test -v` log says.
type result struct {
	passed, failed int
	skips          []string
	summary        []string // top-level test and benchmark results
	total          bool     // speedtest1 printed its TOTAL line
	warnings       int      // walsync-peer: log lines
	warningLines   []string // the first few
}

var (
	resultLine = regexp.MustCompile(`^(\s*)--- (PASS|FAIL|SKIP): (\S+)`)
	totalLine  = regexp.MustCompile(`TOTAL\.+\s+([0-9.]+)s`)
)

func parse(out []byte) result {
	var r result
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := resultLine.FindStringSubmatch(line); m != nil {
			switch m[2] {
			case "PASS":
				r.passed++
			case "FAIL":
				r.failed++
			case "SKIP":
				r.skips = append(r.skips, m[3])
			}
			if m[1] == "" || m[2] != "PASS" {
				r.summary = append(r.summary, strings.TrimSpace(line))
			}
			continue
		}
		if totalLine.MatchString(line) {
			r.total = true
			r.summary = append(r.summary, strings.TrimSpace(line))
		}
		if strings.Contains(line, "walsync-peer:") {
			r.warnings++
			if len(r.warningLines) < 5 {
				r.warningLines = append(r.warningLines, strings.TrimSpace(line))
			}
		}
		if strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "FAIL") {
			r.summary = append(r.summary, line)
		}
	}
	return r
}

// tail prints the end of a failed run's log.
func tail(out []byte) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines[max(0, len(lines)-40):] {
		fmt.Printf("peersuite:   | %s\n", l)
	}
}
