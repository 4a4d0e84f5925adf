package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// stopTimeout bounds how long a tool may take to flush and exit after
// SIGTERM.
const stopTimeout = 2 * time.Minute

// stopGrace is how long the tool runs on after the writer's last commit
// before it is told to stop, so that it uploads the end of the load on its
// own schedule: a commit not durable by then is counted as such, whatever
// the tool uploads when it stops. It is more than the lag goal of walsync
// (2 × the 1 s sync interval + 1 s).
const stopGrace = 5 * time.Second

// measure creates the databases, runs tl under the writer's load, samples
// it over the window and stops it, filling row's figures.
func (r *run) measure(ctx context.Context, tl tool, row *Row) error {
	p, cfg := r.cfg.Progress, r.cfg
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(r.dir, "tool.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	wcfg := WriterConfig{Dir: r.dbDir, DBs: r.n, Active: r.active, Rate: cfg.Rate,
		RowBytes: cfg.RowBytes, Duration: cfg.Warmup + cfg.Duration, CommitLog: r.commitLog}

	p.Linef("%s: creating %d databases", r.prefix, r.n)
	if err := initDatabases(ctx, cfg.Exe, wcfg, logf); err != nil {
		return fmt.Errorf("create databases: %w", err)
	}

	// The application (the writer) runs first, as in production; the
	// tool starts once its connections are open.
	wdone, stopWriter, err := startReadyWriter(ctx, cfg.Exe, wcfg, logf)
	if err != nil {
		return fmt.Errorf("%w; last log line: %s", err, lastLogLine(logPath))
	}
	defer stopWriter()

	// The durability clock runs from before the tool starts to after it
	// exited.
	var clk durableClock
	if r.tgt.startClock == nil {
		r.lagErr = errNoClock
	} else if clk, err = r.tgt.startClock(); err != nil {
		r.lagErr = fmt.Errorf("start the durability clock: %w", err)
	} else {
		r.clockName = clk.name()
		defer func() {
			if clk != nil {
				clk.stop()
			}
		}()
	}
	cmds, err := tl.start(r)
	if err != nil {
		return err
	}
	g, err := startGroup(cmds, logf)
	if err != nil {
		return err
	}
	defer g.kill()
	row.Procs = len(cmds)
	failed := func(err error) error {
		return fmt.Errorf("%s %w (%v); last log line: %s", tl.name, errExited, err, lastLogLine(logPath))
	}

	p.Linef("%s: writer at %g commits/s on %d databases, %d process(es) started, warm-up %s",
		r.prefix, cfg.Rate, r.active, len(cmds), cfg.Warmup)
	warm := time.NewTimer(cfg.Warmup)
	defer warm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-g.died:
		return failed(err)
	case err := <-wdone:
		wdone <- err
		return fmt.Errorf("writer ended during the warm-up: %v", err)
	case <-warm.C:
	}

	var w window
	s, err := sampleAll(g.pids)
	if err != nil {
		return failed(err)
	}
	start := time.Now()
	r.windowStart = start
	w.add(s)
	c0, err := r.tgt.count.snapshot(ctx)
	if err != nil {
		return fmt.Errorf("count requests: %w", err)
	}
	p.Linef("%s: measuring for %s", r.prefix, cfg.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
sampling:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-g.died:
			return failed(err)
		case err := <-wdone:
			wdone <- err
			if err != nil {
				return fmt.Errorf("writer: %w", err)
			}
			break sampling
		case <-tick.C:
			if s, err := sampleAll(g.pids); err == nil {
				w.add(s)
				p.Statusf("%s: %.0f/%.0fs, RSS %.1f MiB", r.prefix, time.Since(start).Seconds(),
					cfg.Duration.Seconds(), mib(s.RSSKB))
			}
		}
	}
	if s, err = sampleAll(g.pids); err != nil {
		return failed(err)
	}
	w.add(s)
	minutes := time.Since(start).Minutes()
	c1, err := r.tgt.count.snapshot(ctx)
	if err != nil {
		return fmt.Errorf("count requests: %w", err)
	}
	w.fill(row, minutes)
	row.WindowS = minutes * 60
	row.RequestsByType = map[string]float64{}
	for t, v := range c1 {
		if d := float64(v-c0[t]) / minutes; d != 0 {
			row.RequestsByType[t] = d
			row.RequestsMin += d
		}
	}

	p.Linef("%s: writer done; stopping the tool in %s", r.prefix, stopGrace)
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-g.died:
		return failed(err)
	case <-grace.C:
	}

	p.Linef("%s: stopping (SIGTERM; the tools flush what is committed)", r.prefix)
	r.stopAt = time.Now()
	err = g.stop(stopTimeout)
	if clk != nil {
		if r.durable, r.lagErr = clk.stop(); r.lagErr != nil {
			r.lagErr = fmt.Errorf("durability clock: %w", r.lagErr)
		}
		clk = nil
	}
	if err != nil {
		return &stopError{fmt.Errorf("%s: %w; last log line: %s", tl.name, err, lastLogLine(logPath))}
	}
	return nil
}

// stopError is a tool that ran through the window but did not exit
// cleanly: its restores are still verified.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// initDatabases runs `walsync bench-writer --init`.
func initDatabases(ctx context.Context, exe string, w WriterConfig, log io.Writer) error {
	cmd := exec.CommandContext(ctx, exe, "bench-writer", "--init", "--dir", w.Dir, "--dbs", strconv.Itoa(w.DBs))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = childEnv(false)
	return cmd.Run()
}

// startWriter starts `walsync bench-writer` for the load. ready is closed
// once its connections are open; done receives its result.
// startReadyWriter starts the writer and waits until it is ready. The
// caller calls stop (cancel and wait) when done; done receives the writer's
// end, which the caller puts back if it reads it before stop.
func startReadyWriter(ctx context.Context, exe string, w WriterConfig, log io.Writer) (done chan error, stop func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	ready, done, err := startWriter(wctx, exe, w, log)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	stop = func() {
		cancel()
		<-done
	}
	select {
	case <-ctx.Done():
		stop()
		return nil, nil, ctx.Err()
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("writer ended before it was ready: %v", err)
	case <-ready:
	}
	return done, stop, nil
}

func startWriter(ctx context.Context, exe string, w WriterConfig, log io.Writer) (ready <-chan struct{}, done chan error, err error) {
	args := []string{"bench-writer", "--dir", w.Dir, "--dbs", strconv.Itoa(w.DBs),
		"--active", strconv.Itoa(w.Active), "--rate", strconv.FormatFloat(w.Rate, 'g', -1, 64),
		"--row-bytes", strconv.Itoa(w.RowBytes), "--duration", w.Duration.String()}
	if w.CommitLog != "" {
		args = append(args, "--commit-log", w.CommitLog)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = log
	cmd.Env = childEnv(false)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start writer: %w", err)
	}
	rd := make(chan struct{})
	done = make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == readyLine {
				close(rd)
				break
			}
			fmt.Fprintln(log, sc.Text())
		}
		io.Copy(log, out)
		done <- cmd.Wait()
	}()
	return rd, done, nil
}

// group is the set of processes of one tool.
type group struct {
	cmds     []*exec.Cmd
	pids     []int
	died     chan error // the first exit before stop
	stopping atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	errs     []error // exit errors
}

// startGroup starts cmds with their output going to log.
func startGroup(cmds []*exec.Cmd, log io.Writer) (*group, error) {
	g := &group{cmds: cmds, died: make(chan error, 1)}
	for i, c := range cmds {
		c.Stdout, c.Stderr = log, log
		if err := c.Start(); err != nil {
			g.kill()
			return nil, fmt.Errorf("start %s (process %d of %d): %w", c.Path, i+1, len(cmds), err)
		}
		g.pids = append(g.pids, c.Process.Pid)
		g.wg.Go(func() {
			err := c.Wait()
			if err == nil && !g.stopping.Load() {
				err = errors.New("exit status 0")
			}
			if err != nil {
				g.mu.Lock()
				g.errs = append(g.errs, err)
				g.mu.Unlock()
				if !g.stopping.Load() {
					select {
					case g.died <- err:
					default:
					}
				}
			}
		})
	}
	return g, nil
}

// stop sends SIGTERM to every process and waits up to timeout for all of
// them to exit, then kills the rest. It returns the exit errors.
func (g *group) stop(timeout time.Duration) error {
	g.stopping.Store(true)
	for _, c := range g.cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		g.kill()
		return fmt.Errorf("did not exit within %s of SIGTERM", timeout)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.errs) > 0 {
		return fmt.Errorf("%d of %d processes exited with an error; first: %w", len(g.errs), len(g.cmds), g.errs[0])
	}
	return nil
}

// kill kills every process still running and waits for them.
func (g *group) kill() {
	g.stopping.Store(true)
	for _, c := range g.cmds {
		if c.Process != nil {
			c.Process.Kill()
		}
	}
	g.wg.Wait()
}

// lastLogLine returns the last line of the log at path, for errors.
func lastLogLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "(no log)"
	}
	off := max(fi.Size()-2048, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return "(no log)"
	}
	if len(b) == 0 {
		return "(empty log)"
	}
	return lastLine(b)
}
