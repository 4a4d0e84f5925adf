package replicate

import (
	"os"
	"strings"
	"testing"
)

// TestTransitionTotal: every state has an outcome for every event, every
// transition to Broken has a reason (its own or the caller's), and Gone is
// left only by a file at the path again.
func TestTransitionTotal(t *testing.T) {
	for st := range numStates {
		for ev := range numEvents {
			s := machine[st][ev]
			if !s.set {
				t.Errorf("no transition from %s on %s", st, ev)
			}
			if st == stateGone && s.next != stateGone && ev != evCreated {
				t.Errorf("gone left on %s", ev)
			}
		}
	}
	for _, st := range []state{stateFollowing, stateHandedOver, stateClosed} {
		for ev := range numEvents {
			s := machine[st][ev]
			if s.next == stateBroken && s.reason == "" && ev != evUnproven {
				t.Errorf("%s on %s breaks the chain without a reason", st, ev)
			}
		}
	}
}

// TestStateTableDocumented: docs/design.md shows the machine as it is.
func TestStateTableDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	if table := machineTable(); !strings.Contains(string(b), table) {
		t.Fatalf("docs/design.md does not contain the state table; it is:\n\n%s", table)
	}
}

// machineTable renders the machine as a markdown table: a row per event, a
// column per state; a cell is the next state and the action, "·" for no
// change.
func machineTable() string {
	var sb strings.Builder
	sb.WriteString("| event \\ state |")
	for st := range numStates {
		sb.WriteString(" " + st.String() + " |")
	}
	sb.WriteString("\n|---|")
	for range numStates {
		sb.WriteString("---|")
	}
	sb.WriteString("\n")
	for ev := range numEvents {
		sb.WriteString("| " + ev.String() + " |")
		for st := range numStates {
			s := machine[st][ev]
			cell := "·"
			switch {
			case s.next != st && s.act != actNone:
				cell = s.next.String() + ", " + actionNames[s.act]
			case s.next != st:
				cell = s.next.String()
			case s.act != actNone:
				cell = actionNames[s.act]
			}
			sb.WriteString(" " + cell + " |")
		}
		sb.WriteString("\n")
	}
	return sb.String()
}
