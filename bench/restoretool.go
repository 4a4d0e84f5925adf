package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/walsync/walsync/replicate"
)

// The simulated intervals both tools get, divided by the time scale: the
// defaults of walsync and of Litestream v0.5.18 (they are the same).
var (
	simCompactionIntervals = replicate.DefaultCompactionIntervals // levels 1, 2, 3
	simL0Retention         = replicate.DefaultL0Retention
	simRetention           = replicate.DefaultRetention
	simSnapshotInterval    = replicate.DefaultSnapshotInterval
	// Litestream only: how often it looks for changes in the WAL (its
	// sync interval's companion), checkpoints, and looks for L0 files to
	// delete.
	simMonitorInterval     = time.Second
	simCheckpointInterval  = time.Minute
	simL0RetentionInterval = 15 * time.Second
)

// restoreTool is one tool of the restore bench.
type restoreTool struct {
	name string
	// start returns the command replicating r's database.
	start func(d *depth, r *replica) (*exec.Cmd, error)
	// restore returns the command restoring r's backup into out.
	restore func(ctx context.Context, d *depth, r *replica, out string) *exec.Cmd
}

// restoreTools returns the tools cfg asks for, walsync first; the i-th
// replicates database i.
func restoreTools(cfg *RestoreConfig) []restoreTool {
	ts := []restoreTool{walsyncRestoreTool()}
	if cfg.Litestream != "" {
		ts = append(ts, litestreamRestoreTool(cfg.Litestream))
	}
	return ts
}

func walsyncRestoreTool() restoreTool {
	return restoreTool{
		name: ToolWalsync,
		start: func(d *depth, r *replica) (*exec.Cmd, error) {
			c := d.cfg
			args := []string{"watch", "--dir", d.dbDir, "--pattern", filepath.Base(DBPath(d.dbDir, r.db)),
				"-b", r.tgt.walsync, "--log-format", "json",
				"--sync-interval", c.scale(c.SyncInterval).String(),
				"--snapshot-interval", c.scale(simSnapshotInterval).String()}
			if d.compaction {
				args = append(args, walsyncCompactionArgs(c)...)
			}
			cmd := exec.Command(c.Exe, append(args, c.WatchArgs...)...)
			cmd.Env = childEnv(false)
			return cmd, nil
		},
		restore: func(ctx context.Context, d *depth, r *replica, out string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, d.cfg.Exe, "restore", filepath.Base(DBPath(d.dbDir, r.db)),
				"-b", r.tgt.walsync, "-o", out, "--integrity-check", d.cfg.IntegrityCheck)
			cmd.Env = childEnv(false)
			return cmd
		},
	}
}

// walsyncCompactionArgs returns the compaction and retention flags of
// walsync watch, scaled.
func walsyncCompactionArgs(c *RestoreConfig) []string {
	ivs := make([]string, len(simCompactionIntervals))
	for i, iv := range simCompactionIntervals {
		ivs[i] = c.scale(iv).String()
	}
	return []string{"--compaction-intervals", strings.Join(ivs, ","),
		"--l0-retention", c.scale(simL0Retention).String(),
		"--retention", c.scale(simRetention).String()}
}

// walsyncCompaction resolves RestoreConfig.Compaction: auto is on when
// `walsync watch --help` lists every compaction flag.
func walsyncCompaction(ctx context.Context, exe, mode string) (bool, error) {
	switch mode {
	case CompactionOn:
		return true, nil
	case CompactionOff:
		return false, nil
	case CompactionAuto, "":
	default:
		return false, fmt.Errorf("bench: compaction %q: want auto, on or off", mode)
	}
	cmd := exec.CommandContext(ctx, exe, "watch", "--help")
	cmd.Env = childEnv(false)
	out, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("bench: walsync watch --help: %w", err)
	}
	for _, f := range []string{"--compaction-intervals", "--l0-retention", "--retention"} {
		if !strings.Contains(string(out), f+" ") {
			return false, nil
		}
	}
	return true, nil
}

func litestreamRestoreTool(bin string) restoreTool {
	return restoreTool{
		name: ToolLitestream,
		start: func(d *depth, r *replica) (*exec.Cmd, error) {
			conf := filepath.Join(d.dir, "litestream.yml")
			yml := litestreamConfig(d.cfg, DBPath(d.dbDir, r.db), r.tgt.litestream(filepath.Base(DBPath(d.dbDir, r.db))))
			if err := os.WriteFile(conf, []byte(yml), 0o600); err != nil {
				return nil, err
			}
			cmd := exec.Command(bin, "replicate", "-no-expand-env", "-config", conf)
			cmd.Env = childEnv(true)
			return cmd, nil
		},
		restore: func(ctx context.Context, d *depth, r *replica, out string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, bin, "restore", "-o", out, "-integrity-check", d.cfg.IntegrityCheck,
				r.tgt.litestream(filepath.Base(DBPath(d.dbDir, r.db))))
			cmd.Env = childEnv(true)
			return cmd
		},
	}
}

// litestreamConfig returns Litestream v0.5.18's configuration replicating
// the database db to url with every interval scaled (the keys of its
// cmd/litestream/main.go Config, DBConfig and ReplicaSettings).
func litestreamConfig(c *RestoreConfig, db, url string) string {
	var b strings.Builder
	q := func(d time.Duration) string { return strconv.Quote(c.scale(d).String()) }
	b.WriteString("levels:\n")
	for _, iv := range simCompactionIntervals {
		fmt.Fprintf(&b, "  - interval: %s\n", q(iv))
	}
	fmt.Fprintf(&b, "snapshot:\n  interval: %s\n  retention: %s\n", q(simSnapshotInterval), q(simRetention))
	fmt.Fprintf(&b, "l0-retention: %s\nl0-retention-check-interval: %s\n", q(simL0Retention), q(simL0RetentionInterval))
	// JSON string escapes are valid YAML double-quoted strings.
	fmt.Fprintf(&b, "dbs:\n  - path: %s\n    monitor-interval: %s\n    checkpoint-interval: %s\n",
		strconv.Quote(db), q(simMonitorInterval), q(simCheckpointInterval))
	fmt.Fprintf(&b, "    replica:\n      url: %s\n      sync-interval: %s\n", strconv.Quote(url), q(c.SyncInterval))
	return b.String()
}
