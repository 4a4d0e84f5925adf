package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// measure restores r's backup through the proxy with the latency on,
// filling r.row with the restore's figures, its verification and what the
// tool left in the target. Failures go in the row.
func (d *depth) measure(ctx context.Context, r *replica) {
	row := &r.row
	row.Commits = r.srcRows - 1 - d.fillRows // the first row is the init's
	errs := []error{r.stopErr}
	if err := d.restore(ctx, r); err != nil {
		errs = append(errs, err)
	}
	if err := d.list(ctx, r); err != nil {
		errs = append(errs, fmt.Errorf("list the target: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		row.Error = oneLine(err)
	}
}

// restore runs the tool's restore as a child process, timing it and
// reading its peak RSS from wait4's rusage, with the proxy counting its
// requests, then compares the restored rows with the source's.
func (d *depth) restore(ctx context.Context, r *replica) error {
	row, proxy := &r.row, d.tg.proxy
	out := filepath.Join(d.dir, "restored-"+r.tool.name+".db")
	defer func() {
		for _, s := range []string{"", "-wal", "-shm"} {
			os.Remove(out + s)
		}
	}()
	d.cfg.Progress.Linef("%s %s: restoring (latency %s per request)", d.prefix, r.tool.name, d.cfg.Latency)
	cmd := r.tool.restore(ctx, d, r, out)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb

	proxy.setLatency(d.cfg.Latency)
	c0, b0 := proxy.snapshot(), proxy.byteSnapshot()
	start := time.Now()
	err := cmd.Run()
	row.WallS = time.Since(start).Seconds()
	c1, b1 := proxy.snapshot(), proxy.byteSnapshot()
	proxy.setLatency(0)

	if cmd.ProcessState == nil {
		return fmt.Errorf("%s restore: %w", r.tool.name, err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		row.MaxRSSKB = ru.Maxrss // KiB on Linux
		row.CPUS = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	for t, v := range c1 {
		row.Requests += v - c0[t]
	}
	row.GETs, row.LISTs, row.HEADs = c1[ReqGet]-c0[ReqGet], c1[ReqList]-c0[ReqList], c1[ReqHead]-c0[ReqHead]
	for t, v := range b1 {
		row.BytesRead += v - b0[t]
	}
	if err != nil {
		return fmt.Errorf("%s restore: %w: %s", r.tool.name, err, lastLine(outb.Bytes()))
	}
	if fi, err := os.Stat(out); err == nil {
		row.DBBytes = fi.Size()
	}
	got, rows, err := HashDB(out)
	if err != nil {
		return err
	}
	if got != r.srcHash {
		return fmt.Errorf("restored rows differ from the source (%d rows, source %d)", rows, r.srcRows)
	}
	row.RestoredOK = true
	return nil
}

// list counts the objects the tool left in its location, and their bytes,
// bypassing the proxy.
func (d *depth) list(ctx context.Context, r *replica) error {
	store, err := d.cfg.Open(ctx, r.tgt.direct)
	if err != nil {
		return err
	}
	for oi, err := range store.List(ctx, "", "") {
		if err != nil {
			return err
		}
		r.row.Objects++
		r.row.ObjectBytes += oi.Size
	}
	return nil
}
