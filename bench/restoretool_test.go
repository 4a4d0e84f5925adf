package bench

import (
	"slices"
	"testing"
	"time"
)

func TestLitestreamConfig(t *testing.T) {
	c := &RestoreConfig{TimeScale: 60, SyncInterval: time.Second}
	got := litestreamConfig(c, "/d/db000001.db", "s3://b/p/db000001.db?region=r")
	want := `levels:
  - interval: "500ms"
  - interval: "5s"
  - interval: "1m0s"
snapshot:
  interval: "24m0s"
  retention: "24m0s"
l0-retention: "5s"
l0-retention-check-interval: "250ms"
dbs:
  - path: "/d/db000001.db"
    monitor-interval: "16.666666ms"
    checkpoint-interval: "1s"
    replica:
      url: "s3://b/p/db000001.db?region=r"
      sync-interval: "16.666666ms"
`
	if got != want {
		t.Fatalf("config:\n%s\nwant:\n%s", got, want)
	}
}

func TestWalsyncCompactionArgs(t *testing.T) {
	c := &RestoreConfig{TimeScale: 600}
	got := walsyncCompactionArgs(c)
	want := []string{"--compaction-intervals", "50ms,500ms,6s", "--l0-retention", "500ms", "--retention", "2m24s"}
	if !slices.Equal(got, want) {
		t.Fatalf("args = %q, want %q", got, want)
	}
}

func TestScale(t *testing.T) {
	for _, tc := range []struct {
		scale float64
		d     time.Duration
		want  time.Duration
	}{
		{1, time.Second, time.Second},
		{60, time.Hour, time.Minute},
		{1e6, time.Second, time.Millisecond}, // at least 1 ms
	} {
		c := &RestoreConfig{TimeScale: tc.scale}
		if got := c.scale(tc.d); got != tc.want {
			t.Errorf("scale(%s) at %g = %s, want %s", tc.d, tc.scale, got, tc.want)
		}
	}
}
