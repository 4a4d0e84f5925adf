package main

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/walsync/walsync/replicate"
)

// retentionOptions are the compaction and retention flags of `walsync
// watch` (docs/design.md, "Compaction and retention").
type retentionOptions struct {
	retention   time.Duration
	l0Retention time.Duration
	intervals   string
	concurrency int
}

func (o *retentionOptions) AddFlags(f *pflag.FlagSet) {
	f.DurationVar(&o.retention, "retention", replicate.DefaultRetention, "keep every restore point this long; older files no restore point needs are deleted (0: keep everything)")
	f.DurationVar(&o.l0Retention, "l0-retention", replicate.DefaultL0Retention, "keep each segment this long after a level-1 file covers it: restore points at every sync for this long (0: for the whole --retention)")
	f.StringVar(&o.intervals, "compaction-intervals", formatIntervals(replicate.DefaultCompactionIntervals), "intervals of compaction levels 1, 2, ..., each a multiple of the one before (\"off\": no compaction)")
	f.IntVar(&o.concurrency, "compaction-concurrency", replicate.DefaultCompactionConcurrency, "compactions running at the same time, all databases together")
}

// parseIntervals parses --compaction-intervals.
func parseIntervals(s string) ([]time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "" {
		return []time.Duration{}, nil
	}
	var out []time.Duration
	for el := range strings.SplitSeq(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(el))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration (e.g. 30s,5m,1h)", el)
		}
		out = append(out, d)
	}
	if err := replicate.CheckCompactionIntervals(out); err != nil {
		return nil, err
	}
	return out, nil
}

func formatIntervals(iv []time.Duration) string {
	var parts []string
	for _, d := range iv {
		parts = append(parts, shortDuration(d))
	}
	return strings.Join(parts, ",")
}

// shortDuration formats d without zero units: 5m, not 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (o *retentionOptions) validate() error {
	switch {
	case o.retention < 0:
		return errors.New("watch: --retention must not be negative")
	case o.l0Retention < 0:
		return errors.New("watch: --l0-retention must not be negative")
	case o.concurrency <= 0:
		return errors.New("watch: --compaction-concurrency must be positive")
	}
	if _, err := parseIntervals(o.intervals); err != nil {
		return fmt.Errorf("watch: --compaction-intervals: %w", err)
	}
	return nil
}

// apply sets the validated flags in opts; 0 (keep everything) is the
// library's negative value.
func (o *retentionOptions) apply(opts *replicate.Options) {
	opts.CompactionIntervals, _ = parseIntervals(o.intervals)
	opts.CompactionConcurrency = o.concurrency
	opts.Retention, opts.L0Retention = o.retention, o.l0Retention
	if o.retention == 0 {
		opts.Retention = -1
	}
	if o.l0Retention == 0 {
		opts.L0Retention = -1
	}
	// A merge's memory (LTX decoders and an encoder) is garbage once the
	// compactions of a boundary are done: give it back at once, one GC
	// per boundary, so that the resident size between boundaries is what
	// replication needs (docs/decisions.md).
	opts.AfterCompactions = debug.FreeOSMemory
}
