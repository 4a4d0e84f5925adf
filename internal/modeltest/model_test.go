package modeltest

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestModelMatchesSQLite applies planned transactions (trims included)
// to a real database and checks that every committed state observed is
// the one the model recorded, and that a rolled-back transaction leaves
// no trace.
func TestModelMatchesSQLite(t *testing.T) {
	w, err := OpenConn(filepath.Join(t.TempDir(), "m.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Exec(Schema()...); err != nil {
		t.Fatal(err)
	}
	m := NewModel()
	m.TrimAbove = 64 << 10
	q := func(sql string) ([][]string, error) { return w.Exec(sql) }
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		size := []Size{Small, Medium}[i%2]
		txn := m.Plan(rng, size, 256<<10, 0)
		if i%7 == 3 { // rolled back: a later commit reuses its sequence numbers
			other := m.Plan(rng, size, 256<<10, 7)
			if _, err := w.Exec(append(append([]string{"BEGIN"}, other.Stmts()...), "ROLLBACK")...); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Exec(append(append([]string{"BEGIN"}, txn.Stmts()...), "COMMIT")...); err != nil {
			t.Fatalf("%v: %v", txn, err)
		}
		m.Committed(txn, time.Now())
		got, err := Observe(q, i%10 == 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Match(got); err != nil {
			t.Fatalf("after %v: %v", txn, err)
		}
	}
	if got := m.Current(); got.FirstSeq <= 1 {
		t.Fatalf("log never trimmed: %+v", got)
	}
}

// TestMatchRejects: a state that is not a committed prefix is refused.
func TestMatchRejects(t *testing.T) {
	m := NewModel()
	rng := rand.New(rand.NewPCG(3, 4))
	txn := m.Plan(rng, Small, 1<<20, 0)
	m.Committed(txn, time.Now())
	cur := m.Current()
	for name, s := range map[string]State{
		"MidTransaction": {Epoch: 0, LastSeq: cur.LastSeq - 1},
		"FutureSeq":      {Epoch: 0, LastSeq: cur.LastSeq + 1},
		"WrongBalances":  func() State { s := cur; s.BalHash++; return s }(),
		"WrongEpoch":     func() State { s := cur; s.Epoch = 1; return s }(),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := m.Match(s); err == nil {
				t.Fatalf("Match(%+v) = nil, want an error", s)
			}
		})
	}
	if _, err := m.Match(cur); err != nil {
		t.Fatalf("Match(current) = %v, want nil", err)
	}
}

func TestSelectActions(t *testing.T) {
	all := []Action{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	names := func(as []Action) string {
		var s []string
		for _, a := range as {
			s = append(s, a.Name)
		}
		return strings.Join(s, ",")
	}
	for spec, want := range map[string]string{"": "a,b,c", "-b": "a,c", "a,c": "a,c", "+c": "c", "-a,-c": "b"} {
		got, err := selectActions(all, spec)
		if err != nil {
			t.Fatalf("selectActions(%q): %v", spec, err)
		}
		if got, want := names(got), want; got != want {
			t.Fatalf("selectActions(%q)=%v, want %v", spec, got, want)
		}
	}
	if _, err := selectActions(all, "-nope"); err == nil {
		t.Fatal("selectActions(-nope) = nil error, want unknown action")
	}
}
