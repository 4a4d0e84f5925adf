package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/walsync/walsync/internal/redact"
)

// usageError is a command line that names the wrong arguments. It is
// reported with the command's usage line and a pointer to its help.
type usageError struct {
	msg   string // what is wrong, e.g. "restore: missing NAME"
	usage string // the command's usage line, e.g. "walsync restore NAME -b URL -o OUT [flags]"
	path  string // the command's path, e.g. "walsync restore"
}

func (e *usageError) Error() string { return e.msg }

// exitStatus ends walsync with a given exit status. Err, if not nil, is
// reported first; a nil Err means the status says it all (exec mode
// passing on the child's status).
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitStatus) Unwrap() error { return e.err }

// report writes err to w, redacted, as main shows it, and returns the exit
// status: one line "walsync: MESSAGE", followed for a usage error by the
// usage line and where to find the flags; nothing for an exit status
// without an error. The status is 1 unless err carries another.
func report(w io.Writer, err error) int {
	code := 1
	if es, ok := errors.AsType[*exitStatus](err); ok {
		code = es.code
		if es.err == nil {
			return code
		}
	}
	fmt.Fprintln(w, "walsync:", redact.Text(oneLine(err)))
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintln(w, "usage:", redact.Text(ue.usage))
		fmt.Fprintf(w, "run '%s --help' for the flags\n", ue.path)
	}
	return code
}

// newUsageError returns a usageError of cmd with message msg.
func newUsageError(cmd *cobra.Command, msg string) *usageError {
	return &usageError{msg: msg, usage: cmd.UseLine(), path: cmd.CommandPath()}
}

// argsNamed returns a cobra argument check for a command that takes
// exactly the positional arguments names (in the usage line's words, e.g.
// "NAME"), each explained by the matching hint. A missing one is named,
// with its hint; extra ones are counted, never echoed (an argument may be
// a URL with a secret in it).
func argsNamed(names []string, hints []string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			missing := names[len(args)]
			msg := fmt.Sprintf("%s: missing %s", cmd.Name(), missing)
			if hint := hints[len(args)]; hint != "" {
				msg += " (" + hint + ")"
			}
			return newUsageError(cmd, msg)
		case len(args) > len(names):
			want := "no arguments"
			if len(names) > 0 {
				want = strings.Join(names, " ")
			}
			noun := "arguments"
			if len(args) == 1 {
				noun = "argument"
			}
			return newUsageError(cmd, fmt.Sprintf("%s: takes %s, got %d %s", cmd.Name(), want, len(args), noun))
		}
		return nil
	}
}

// noArgs is the argument check of a command without positional arguments.
var noArgs = argsNamed(nil, nil)
