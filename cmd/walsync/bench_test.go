package main

import (
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/walsync/walsync/bench"
)

func TestBenchLagCells(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  bench.Row
		want string
	}{
		{"Measured", bench.Row{LagClock: "proxy", LagCommits: 100, LagP50MS: 512.4, LagP99MS: 1003.6, LagMaxMS: 1044, LagNotDurable: 2}, "512\t1004\t1044\t2"},
		{"NoneDurable", bench.Row{LagClock: "inotify", LagNotDurable: 5}, "-\t-\t-\t5"},
		{"NotMeasured", bench.Row{LagError: "no durability clock"}, "-\t-\t-\t-"},
		{"OldRow", bench.Row{}, "-\t-\t-\t-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lagCells(tc.row); got != tc.want {
				t.Fatalf("lagCells = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRestoreRatios(t *testing.T) {
	rows := []bench.RestoreRow{
		{Tool: bench.ToolWalsync, HistoryS: 0, WallS: 1, MaxRSSKB: 20 << 10, RestoredOK: true},
		{Tool: bench.ToolLitestream, HistoryS: 0, WallS: 3.5, MaxRSSKB: 80 << 10, RestoredOK: true},
		{Tool: bench.ToolWalsync, HistoryS: 900, WallS: 2, MaxRSSKB: 20 << 10, RestoredOK: true},
		{Tool: bench.ToolLitestream, HistoryS: 900, Error: "boom"}, // not verified: no ratio
	}
	got := restoreRatios(rows)
	want := []string{"history 0s: walsync 3.50× as fast as litestream, at 0.25× its peak RSS"}
	if len(got) != len(want) || got[0] != want[0] {
		t.Fatalf("ratios = %q, want %q", got, want)
	}
}

func TestBenchRestoreValidate(t *testing.T) {
	ok := func() *benchRestoreOptions {
		o := &benchRestoreOptions{}
		o.AddFlags(pflag.NewFlagSet("t", pflag.ContinueOnError))
		o.target = "s3://b?endpoint=http://127.0.0.1:1"
		return o
	}
	if err := ok().validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mod := range map[string]func(*benchRestoreOptions){
		"ErrNoTarget":   func(o *benchRestoreOptions) { o.target = "" },
		"ErrScale":      func(o *benchRestoreOptions) { o.timeScale = 0.5 },
		"ErrCheck":      func(o *benchRestoreOptions) { o.check = "deep" },
		"ErrCompare":    func(o *benchRestoreOptions) { o.compare = "rsync" },
		"ErrNegative":   func(o *benchRestoreOptions) { o.histories = []time.Duration{-time.Second} },
		"ErrNoHistory":  func(o *benchRestoreOptions) { o.histories = nil },
		"ErrLatencyNeg": func(o *benchRestoreOptions) { o.latency = -time.Millisecond },
	} {
		t.Run(name, func(t *testing.T) {
			o := ok()
			mod(o)
			if err := o.validate(); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
