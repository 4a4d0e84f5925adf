// Package modeltest is walsync's randomized model test: it drives real
// SQLite writers through random legal action sequences on one database
// while walsync replicates it, and after every step restores the live
// target and checks the two promises: nothing committed is lost (every
// restore is an exact committed prefix, and holds every commit
// acknowledged before T once T plus the sync interval plus an upload
// allowance has passed) and the application is never hurt (its WAL stays
// bounded, its commits are not blocked for long, it reads what it would
// read without walsync).
//
// The engine ([Runner]) is shared by the two capture paths; each path's
// test supplies how writers are opened, how the target is restored and
// its own actions (cmd/walsync/model_test.go: `walsync watch` and writer
// processes; vfs/model_test.go: the in-process VFS).
//
// A run is seeded and prints its seed. Flags (registered by [Flags]):
//
//	-model.seed=N            reproduce a run (0: a new random seed)
//	-model.duration=D        run for D (default: the test's short budget)
//	-model.steps=N           run N steps instead
//	-model.actions=LIST      e.g. "-journalmode,-replace" or "commit,idle"
//	-model.writers=LIST      writer kinds, same syntax: "-plain", "py,sh"
//	-model.lag=D             upload allowance of the lag bound (a long one
//	                         leaves lag failures out to explore others)
//	-model.v                 log every step
//
// Timing is real: a seed reproduces the configuration and the action
// sequence as long as the outcomes (busy, a shell that exits) agree, and
// the interleaving with walsync's own syncs only approximately.
package modeltest

import (
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// DefaultLag is the default upload allowance of the lag bound: generous,
// for -race builds on a loaded two-core machine.
const DefaultLag = 4 * time.Second

// Config holds the -model.* flags.
type Config struct {
	Seed        uint64
	Duration    time.Duration
	Steps       int
	Actions     string
	Writers     string
	Lag         time.Duration
	CommitBound time.Duration
	Verbose     bool
}

// Flags registers the -model.* flags on fs and returns their values.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.Uint64Var(&c.Seed, "model.seed", 0, "model test: seed to reproduce (0: random)")
	fs.DurationVar(&c.Duration, "model.duration", 0, "model test: how long to run (0: the short default)")
	fs.IntVar(&c.Steps, "model.steps", 0, "model test: number of steps (overrides -model.duration)")
	fs.StringVar(&c.Actions, "model.actions", "", `model test: actions, e.g. "-journalmode,-replace" (all but) or "commit,idle" (only)`)
	fs.StringVar(&c.Writers, "model.writers", "", `model test: writer kinds, e.g. "-plain" (all but) or "py" (only)`)
	fs.DurationVar(&c.Lag, "model.lag", DefaultLag, "model test: upload allowance added to the sync interval in the lag bound")
	fs.DurationVar(&c.CommitBound, "model.commit-bound", 3*time.Second, "model test: longest a small commit may take")
	fs.BoolVar(&c.Verbose, "model.v", false, "model test: log every step")
	return c
}

// Action is one kind of step.
type Action struct {
	Name   string
	Weight int
	// Ready reports whether the action can run now (nil: always).
	Ready func(r *Runner) bool
	// Do runs the action and returns a short outcome for the counts and
	// the history ("ok", "busy", ...). An error is a failed invariant.
	Do func(r *Runner) (string, error)
}

// selectKinds applies a -model.writers list to the writer kinds long
// and once, returning what is left of each.
func selectKinds(long, once []string, spec string) ([]string, []string, error) {
	var all []Action
	for _, k := range append(slices.Clone(long), once...) {
		if !slices.ContainsFunc(all, func(a Action) bool { return a.Name == k }) {
			all = append(all, Action{Name: k})
		}
	}
	sel, err := selectActions(all, spec)
	if err != nil {
		return nil, nil, fmt.Errorf("-model.writers: %w", err)
	}
	keep := func(kinds []string) []string {
		var out []string
		for _, k := range kinds {
			if slices.ContainsFunc(sel, func(a Action) bool { return a.Name == k }) {
				out = append(out, k)
			}
		}
		return out
	}
	return keep(long), keep(once), nil
}

// selectActions applies a -model.actions list to the available actions.
// "" keeps all; "-a,-b" removes a and b; "a,b" keeps only a and b.
func selectActions(all []Action, spec string) ([]Action, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return all, nil
	}
	names := make([]string, len(all))
	for i, a := range all {
		names[i] = a.Name
	}
	var keep, drop []string
	for f := range strings.SplitSeq(spec, ",") {
		f = strings.TrimSpace(f)
		name, neg := strings.CutPrefix(f, "-")
		name = strings.TrimPrefix(name, "+")
		if !slices.Contains(names, name) {
			sort.Strings(names)
			return nil, fmt.Errorf("-model.actions: unknown action %q (known: %s)", name, strings.Join(names, ","))
		}
		if neg {
			drop = append(drop, name)
		} else {
			keep = append(keep, name)
		}
	}
	var out []Action
	for _, a := range all {
		if slices.Contains(drop, a.Name) || (len(keep) > 0 && !slices.Contains(keep, a.Name)) {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}
