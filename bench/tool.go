package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/walsync/walsync/replicate"
)

// Tools and modes the bench measures.
const (
	ToolWalsync    = "walsync"
	ToolLitestream = "litestream"

	ModeOneProcess   = "one-process"    // one process replicates every database
	ModeProcessPerDB = "process-per-db" // one process per database; figures are summed
)

// litestreamRSSPerProcess is the RSS of one idle Litestream v0.5.18
// process (docs/benchmarks.md), used to skip the process-per-db mode when
// it would not fit in memory.
const litestreamRSSPerProcess = 56 << 20

// tool is one tool in one mode.
type tool struct {
	name, mode string
	// skip returns why the tool cannot run at n databases, or "".
	skip func(n int) string
	// start starts the processes replicating the databases of r.
	start func(r *run) ([]*exec.Cmd, error)
	// restore restores database file db of r into out.
	restore func(ctx context.Context, r *run, db, out string) error
}

func (t tool) label() string { return t.name + "/" + t.mode }

// tools returns the tools cfg asks for, walsync first.
func tools(cfg *Config) []tool {
	ts := []tool{walsyncTool()}
	if cfg.Litestream != "" {
		ts = append(ts, litestreamTool(cfg.Litestream, ModeProcessPerDB), litestreamTool(cfg.Litestream, ModeOneProcess))
	}
	return ts
}

func walsyncTool() tool {
	return tool{
		name: ToolWalsync, mode: ModeOneProcess,
		skip: func(int) string { return "" },
		start: func(r *run) ([]*exec.Cmd, error) {
			args := append([]string{"watch", "--dir", r.dbDir, "--pattern", "db*.db",
				"-b", r.tgt.walsync, "--log-format", "json"}, r.cfg.WatchArgs...)
			cmd := exec.Command(r.cfg.Exe, args...)
			cmd.Env = childEnv(false)
			return []*exec.Cmd{cmd}, nil
		},
		restore: func(ctx context.Context, r *run, db, out string) error {
			if r.store == nil {
				s, err := r.cfg.Open(ctx, r.tgt.direct)
				if err != nil {
					return err
				}
				r.store = s
			}
			_, err := replicate.Restore(ctx, r.store, db, out, replicate.RestoreOptions{Check: replicate.IntegrityQuick})
			return err
		},
	}
}

func litestreamTool(bin, mode string) tool {
	t := tool{
		name: ToolLitestream, mode: mode,
		skip: func(int) string { return "" },
		restore: func(ctx context.Context, r *run, db, out string) error {
			cmd := exec.CommandContext(ctx, bin, "restore", "-o", out, r.tgt.litestream(db))
			cmd.Env = childEnv(true)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("litestream restore %s: %w: %s", db, err, lastLine(b))
			}
			return nil
		},
	}
	if mode == ModeProcessPerDB {
		t.skip = func(n int) string {
			need := int64(n) * litestreamRSSPerProcess
			if avail := memAvailable(); avail > 0 && need > avail*7/10 {
				return fmt.Sprintf("skipped: %d processes need about %d MiB, more than 70%% of the %d MiB available",
					n, need>>20, avail>>20)
			}
			return ""
		}
		t.start = func(r *run) ([]*exec.Cmd, error) {
			cmds := make([]*exec.Cmd, r.n)
			for i := range r.n {
				db := DBPath(r.dbDir, i)
				cmds[i] = exec.Command(bin, "replicate", db, r.tgt.litestream(filepath.Base(db)))
				cmds[i].Env = childEnv(true)
			}
			return cmds, nil
		}
		return t
	}
	t.start = func(r *run) ([]*exec.Cmd, error) {
		var b strings.Builder
		b.WriteString("dbs:\n")
		for i := range r.n {
			db := DBPath(r.dbDir, i)
			// JSON string escapes are valid YAML double-quoted strings.
			fmt.Fprintf(&b, "  - path: %s\n    replica:\n      url: %s\n",
				strconv.Quote(db), strconv.Quote(r.tgt.litestream(filepath.Base(db))))
		}
		conf := filepath.Join(r.dir, "litestream.yml")
		if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "replicate", "-no-expand-env", "-config", conf)
		cmd.Env = childEnv(true)
		return []*exec.Cmd{cmd}, nil
	}
	return t
}

// FindLitestream returns the Litestream binary to compare with: path if
// given, else litestream on $PATH, else the copy the test tools install
// under ~/.cache/walsync/tools.
func FindLitestream(path string) (string, error) {
	if path != "" {
		return exec.LookPath(path)
	}
	if p, err := exec.LookPath("litestream"); err == nil {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(home, ".cache", "walsync", "tools", "litestream-v0.5.18", "litestream")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("litestream not found: give --litestream PATH, put it on $PATH or run ./test.sh once (it installs v0.5.18)")
	}
	return p, nil
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes, or 0.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// lastLine returns the last non-empty line of b, for error messages.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
