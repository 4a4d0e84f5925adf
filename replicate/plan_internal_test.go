package replicate

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/superfly/ltx"
)

func TestPlanTXID(t *testing.T) {
	f := func(level int, lo, hi ltx.TXID) ltxFile {
		return ltxFile{level: level, minTXID: lo, maxTXID: hi, key: ltxKey("db", level, lo, hi)}
	}
	files := []ltxFile{
		f(0, 2, 2), f(0, 3, 3), f(0, 4, 4), f(0, 6, 6), f(0, 7, 7), // gap at 5: a snapshot
		f(1, 2, 4), // a Litestream compaction
		f(9, 1, 1), f(9, 1, 5),
	}
	for _, c := range []struct {
		txid ltx.TXID
		want string // keys' TXID ranges, or an error substring
	}{
		{0, "1-5 6-6 7-7"},
		{7, "1-5 6-6 7-7"},
		{5, "1-5"},
		{4, "1-1 2-4"},
		{3, "1-1 2-2 3-3"},
		{1, "1-1"},
		{8, "out of range"},
	} {
		plan, err := planTXID(files, c.txid)
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var parts []string
			for _, p := range plan {
				parts = append(parts, strings.TrimLeft(p.minTXID.String(), "0")+"-"+strings.TrimLeft(p.maxTXID.String(), "0"))
			}
			got = strings.Join(parts, " ")
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("txid %d: plan %q, want %q", c.txid, got, c.want)
		}
	}
	if _, err := planTXID(nil, 0); !errors.Is(err, ErrNoBackup) {
		t.Errorf("no files: err = %v", err)
	}
	if _, err := planTXID([]ltxFile{f(0, 2, 2)}, 0); !errors.Is(err, ErrNotRestorable) {
		t.Errorf("no snapshot: err = %v", err)
	}
}

// TestPlanProperty: for random file sets, any plan returned starts with a
// snapshot, leaves no TXID out (files may overlap), always moves forward and
// ends exactly at the target; otherwise the planner says why.
func TestPlanProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 2000 {
		var files []ltxFile
		n := ltx.TXID(1 + rng.IntN(30))
		for tx := ltx.TXID(1); tx <= n; tx++ {
			if rng.IntN(5) > 0 {
				files = append(files, ltxFile{level: 0, minTXID: tx, maxTXID: tx})
			}
			if rng.IntN(8) == 0 {
				files = append(files, ltxFile{level: 9, minTXID: 1, maxTXID: tx})
			}
			if span := ltx.TXID(rng.IntN(4)); rng.IntN(6) == 0 && tx+span <= n {
				files = append(files, ltxFile{level: 1 + rng.IntN(3), minTXID: tx, maxTXID: tx + span})
			}
		}
		target := ltx.TXID(rng.IntN(int(n) + 2))
		plan, err := planTXID(files, target)
		if err != nil {
			if !errors.Is(err, ErrNotRestorable) && !errors.Is(err, ErrNoBackup) {
				t.Fatalf("iter %d: unexpected error %v", iter, err)
			}
			continue
		}
		if plan[0].minTXID != 1 {
			t.Fatalf("iter %d: plan starts at %d", iter, plan[0].minTXID)
		}
		for i := 1; i < len(plan); i++ {
			if plan[i].minTXID > plan[i-1].maxTXID+1 || plan[i].maxTXID <= plan[i-1].maxTXID || plan[i].level == SnapshotLevel {
				t.Fatalf("iter %d: not contiguous: %+v", iter, plan)
			}
		}
		end := plan[len(plan)-1].maxTXID
		if target != 0 && end != target {
			t.Fatalf("iter %d: plan ends at %d, want %d", iter, end, target)
		}
	}
}

// FuzzParseLTXKey: keys from a target are never trusted; whatever the
// parser accepts must round-trip to the same key.
func FuzzParseLTXKey(f *testing.F) {
	f.Add("db/0000/0000000000000002-0000000000000002.ltx")
	f.Add("db/0009/0000000000000001-00000000000000ff.ltx")
	f.Add("db/0000/../../etc/passwd")
	f.Add("db/0000/0000000000000002-0000000000000001.ltx")
	f.Fuzz(func(t *testing.T, key string) {
		lf, err := parseLTXKey("db/0000/", key, 0)
		if err != nil {
			return
		}
		if got := ltxKey("db", 0, lf.minTXID, lf.maxTXID); got != key {
			t.Fatalf("accepted %q but it formats as %q", key, got)
		}
	})
}

// FuzzCleanName: an accepted name has no empty, "." or ".." element and is
// its own canonical form.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"var/lib/app.db", "/abs/path.db", "a/../b", "a//b", "./x", "t\x00", "é/ü.db"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := CleanName(name)
		if err != nil {
			return
		}
		for _, el := range strings.Split(n, "/") {
			if el == "" || el == "." || el == ".." {
				t.Fatalf("CleanName(%q) = %q has element %q", name, n, el)
			}
		}
		if again, err := CleanName(n); err != nil || again != n {
			t.Fatalf("CleanName(%q) = %q, not canonical (%q, %v)", name, n, again, err)
		}
	})
}
