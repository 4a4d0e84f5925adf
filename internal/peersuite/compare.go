package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// compareSpeedtest builds speedtest1 once and runs it pairs times on each
// of the plain OS VFS and the walsync VFS (WAL mode, --size size), in
// alternating order (plain first in even pairs, walsync first in odd ones)
// so that drifting load on the machine hits both alike. It prints each
// pair's TOTAL times and ratio, then the medians, the ratio of the medians
// and the median of the paired ratios. With profDir, each run writes CPU
// and allocation profiles there (speedtest1-<vfs>-<i>.{cpu,mem}.pprof).
func compareSpeedtest(module, work string, pairs, size int, interval time.Duration, profDir string) error {
	dir := filepath.Join(module, "vfs/tests/speedtest1")
	bin := filepath.Join(work, "speedtest1.test")
	if _, err := goOutput(dir, "test", "-c", "-o", bin); err != nil {
		return err
	}
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			return err
		}
	}
	target := filepath.Join(work, "target")
	// runOne returns speedtest1's TOTAL and the CPU time (user+system) of
	// the whole process, which the background replication adds to.
	runOne := func(vfsName string, i int) (total, cpu float64, err error) {
		// speedtest1's TestMain takes every argument not starting with
		// "-test." as its own: test flags must be -test.name=value.
		args := []string{"-test.run=^$", "-test.bench=^Benchmark_speedtest1$",
			"-test.benchtime=" + strconv.Itoa(size) + "x", "-test.v"}
		if profDir != "" {
			base := filepath.Join(profDir, fmt.Sprintf("speedtest1-%s-%02d", vfsName, i))
			args = append(args, "-test.cpuprofile="+base+".cpu.pprof", "-test.memprofile="+base+".mem.pprof")
		}
		args = append(args, "--", "--vfs", vfsName, "--journal", "wal")
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = suiteEnv(target, interval.String())
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("speedtest1 --vfs %s: %w\n%s", vfsName, err, out)
		}
		m := totalLine.FindSubmatch(out)
		if m == nil {
			return 0, 0, fmt.Errorf("speedtest1 --vfs %s printed no TOTAL line:\n%s", vfsName, out)
		}
		total, err = strconv.ParseFloat(string(m[1]), 64)
		cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		return total, cpu, err
	}
	fmt.Printf("peersuite: speedtest1 --size %d --journal wal, %d alternating pairs, walsync sync interval %s\n", size, pairs, interval)
	fmt.Printf("peersuite: %4s %10s %10s %8s %12s %12s %8s\n", "pair", "plain s", "walsync s", "ratio", "plain cpu s", "walsync cpu", "ratio")
	var plain, walsync, ratios, cpuRatios []float64
	for i := range pairs {
		order := []string{"plain", "walsync"}
		if i%2 == 1 {
			order = []string{"walsync", "plain"}
		}
		got, cpu := map[string]float64{}, map[string]float64{}
		for _, v := range order {
			t, c, err := runOne(v, i)
			if err != nil {
				return err
			}
			got[v], cpu[v] = t, c
		}
		plain, walsync = append(plain, got["plain"]), append(walsync, got["walsync"])
		ratios = append(ratios, got["walsync"]/got["plain"])
		cpuRatios = append(cpuRatios, cpu["walsync"]/cpu["plain"])
		fmt.Printf("peersuite: %4d %10.3f %10.3f %8.3f %12.3f %12.3f %8.3f\n", i, got["plain"], got["walsync"], ratios[i], cpu["plain"], cpu["walsync"], cpuRatios[i])
	}
	mp, mw, mr := median(plain), median(walsync), median(ratios)
	fmt.Printf("peersuite: median plain %.3fs, walsync %.3fs: ratio of medians %.3f, median paired ratio %.3f (range %.3f-%.3f)\n",
		mp, mw, mw/mp, mr, slices.Min(ratios), slices.Max(ratios))
	fmt.Printf("peersuite: process CPU time (speedtest1 plus the background replication): median paired ratio %.3f (range %.3f-%.3f)\n",
		median(cpuRatios), slices.Min(cpuRatios), slices.Max(cpuRatios))
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
