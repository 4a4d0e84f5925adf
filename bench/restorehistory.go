package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// build creates the databases, runs the writer for the history with every
// tool replicating its own database, waits for the tools to go quiet and
// stops them, recording each source's end state.
func (d *depth) build(ctx context.Context, reps []*replica) error {
	p, cfg := d.cfg.Progress, d.cfg
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	wlog, err := os.Create(filepath.Join(d.dir, "writer.log"))
	if err != nil {
		return err
	}
	defer wlog.Close()
	wall := time.Duration(float64(d.history) / cfg.TimeScale)
	wcfg := WriterConfig{Dir: d.dbDir, DBs: len(reps), Active: len(reps), Rate: cfg.Rate * cfg.TimeScale,
		RowBytes: cfg.RowBytes, Duration: wall}
	p.Linef("%s: creating %d databases of %d MiB", d.prefix, len(reps), cfg.DBSize>>20)
	if err := initDatabases(ctx, cfg.Exe, wcfg, wlog); err != nil {
		return fmt.Errorf("create databases: %w", err)
	}
	if d.fillRows, err = fillDB(ctx, DBPath(d.dbDir, 0), cfg.DBSize); err != nil {
		return err
	}
	for i := 1; i < len(reps); i++ {
		if err := copyFile(DBPath(d.dbDir, 0), DBPath(d.dbDir, i)); err != nil {
			return err
		}
	}

	// The application (the writer) runs first, as in production.
	var wdone chan error
	if d.history > 0 {
		var stopWriter func()
		if wdone, stopWriter, err = startReadyWriter(ctx, cfg.Exe, wcfg, wlog); err != nil {
			return err
		}
		defer stopWriter()
	}

	for _, r := range reps {
		r.act = d.tg.proxy.watch(d.tg.proxyPrefix(r.label))
		defer d.tg.proxy.unwatch(r.act)
		if r.log, err = os.Create(filepath.Join(d.dir, r.tool.name+".log")); err != nil {
			return err
		}
		defer r.log.Close()
		cmd, err := r.tool.start(d, r)
		if err != nil {
			return err
		}
		if r.grp, err = startGroup([]*exec.Cmd{cmd}, r.log); err != nil {
			return err
		}
		defer r.grp.kill()
	}
	died := func() error {
		for _, r := range reps {
			select {
			case err := <-r.grp.died:
				return fmt.Errorf("%s %w (%v); last log line: %s", r.tool.name, errExited, err, lastLogLine(r.log.Name()))
			default:
			}
		}
		return nil
	}

	if d.history > 0 {
		p.Linef("%s: writing %g commits/s (simulated %g/s × %g) for %s", d.prefix, wcfg.Rate, cfg.Rate, cfg.TimeScale, wall.Round(time.Second))
		start := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
	writing:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-wdone:
				wdone <- err
				if err != nil {
					return fmt.Errorf("writer: %w", err)
				}
				break writing
			case <-tick.C:
				if err := died(); err != nil {
					return err
				}
				p.Statusf("%s: %.0f/%.0f s", d.prefix, time.Since(start).Seconds(), wall.Seconds())
			}
		}
	}

	p.Linef("%s: waiting for the tools to go quiet (%s without a request)", d.prefix, quietFor)
	deadline := time.Now().Add(settleTimeout)
	for {
		if err := died(); err != nil {
			return err
		}
		now, all := time.Now(), true
		for _, r := range reps {
			all = all && r.act.quiet(now, quietFor)
		}
		if all {
			break
		}
		if now.After(deadline) {
			return fmt.Errorf("the tools did not go quiet within %s", settleTimeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	for _, r := range reps {
		if err := r.grp.stop(stopTimeout); err != nil {
			r.stopErr = fmt.Errorf("%s: %w; last log line: %s", r.tool.name, err, lastLogLine(r.log.Name()))
		}
	}
	for _, r := range reps {
		if r.srcHash, r.srcRows, err = HashDB(DBPath(d.dbDir, r.db)); err != nil {
			return err
		}
	}
	return nil
}

// proxyPrefix returns the path prefix ("bucket/prefix/") of the requests
// to the location forRun(label) gives, as the proxy sees them.
func (t *targets) proxyPrefix(label string) string {
	return t.s3.Bucket + "/" + strings.Trim(t.s3.Prefix+"/"+label, "/") + "/"
}
