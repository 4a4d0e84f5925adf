package main

import (
	"testing"

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
