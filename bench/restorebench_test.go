package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// buildWalsync builds the walsync command (without -race: the bench runs
// it as a child process) into a temporary directory.
func buildWalsync(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "walsync")
	out, err := exec.Command("go", "build", "-o", exe, "github.com/walsync/walsync/cmd/walsync").CombinedOutput()
	if err != nil {
		t.Fatalf("build walsync: %v\n%s", err, out)
	}
	return exe
}

// TestRunRestore runs the restore bench end to end at a tiny size: a
// fresh backup and a two-minute history at 60× speed, both tools, against
// versitygw.
func TestRunRestore(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	litestream := testenv.Litestream(t)
	exe := buildWalsync(t)
	open := func(ctx context.Context, url string) (replicate.Storage, error) {
		c, err := s3.ParseURL(url)
		if err != nil {
			return nil, err
		}
		return s3.New(ctx, c)
	}
	cfg := RestoreConfig{
		Exe: exe, Litestream: litestream,
		Target:    fmt.Sprintf("s3://%s/rb?endpoint=%s&region=%s&path-style=true", bucket, endpoint, testenv.Region),
		Histories: []time.Duration{0, 2 * time.Minute}, TimeScale: 60, Rate: 1, RowBytes: 100,
		SyncInterval: time.Second, DBSize: 256 << 10, Latency: time.Millisecond, IntegrityCheck: "quick",
		Compaction: CompactionAuto, WorkDir: t.TempDir(), Open: open,
	}
	var rows []RestoreRow
	if err := RunRestore(t.Context(), cfg, func(r RestoreRow) { rows = append(rows, r) }); err != nil {
		t.Fatal(err)
	}
	if got, want := len(rows), 4; got != want {
		t.Fatalf("%d rows, want %d: %+v", got, want, rows)
	}
	for i, r := range rows {
		wantTool := []string{ToolWalsync, ToolLitestream}[i%2]
		wantScenario := []string{ScenarioSnapshot, ScenarioHistory}[i/2]
		if r.Tool != wantTool || r.Scenario != wantScenario {
			t.Errorf("row %d: %s %s, want %s %s", i, r.Tool, r.Scenario, wantTool, wantScenario)
		}
		if r.Failed() {
			t.Errorf("row %d (%s %s): failed: %s", i, r.Tool, r.Scenario, r.Error)
		}
		if r.GETs == 0 || r.BytesRead < 200<<10 || r.MaxRSSKB == 0 || r.Objects == 0 || r.ObjectBytes < 200<<10 || r.WallS <= 0 {
			t.Errorf("row %d (%s %s): figures missing: %+v", i, r.Tool, r.Scenario, r)
		}
		if r.DBBytes < 256<<10 {
			t.Errorf("row %d (%s %s): restored %d bytes, want at least the filler's", i, r.Tool, r.Scenario, r.DBBytes)
		}
		if (r.Scenario == ScenarioHistory) != (r.Commits > 0) {
			t.Errorf("row %d (%s %s): %d commits", i, r.Tool, r.Scenario, r.Commits)
		}
	}
}
