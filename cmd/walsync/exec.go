package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"github.com/mattn/go-shellwords"
)

// Exec mode: `walsync watch ... --exec "CMD ARGS"` or `walsync watch ...
// -- CMD ARGS` runs the application as walsync's child, once the databases
// are being replicated. Signals sent to walsync are passed on to the
// child; when the child exits, walsync uploads what is committed and exits
// with the child's status. See docs/deploy.md ("Exec mode").

// execSignals are the signals passed on to the child. SIGINT and SIGTERM
// do not stop walsync in exec mode: the child decides when to stop, and
// walsync stops after it.
var execSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

// Exit statuses of exec mode that are not the child's, as a shell's.
const (
	exitNotFound      = 127 // the command was not found
	exitCannotExecute = 126 // the command was found but could not be started
)

// parseExec splits an --exec command line into words as a POSIX shell
// would (quotes, backslash escapes), without running a shell: no variable
// or command substitution, globbing, redirection or operators. A line
// with an operator (; & | < >) outside quotes is refused rather than cut
// there: run `sh -c '...'` for those.
func parseExec(line string) ([]string, error) {
	p := shellwords.NewParser() // ParseEnv and ParseBacktick off
	argv, err := p.Parse(line)
	switch {
	case err != nil:
		return nil, fmt.Errorf("--exec %q: %w (unbalanced quotes or a trailing backslash?)", line, err)
	case p.Position >= 0:
		return nil, fmt.Errorf("--exec %q: shell operator at byte %d: walsync runs one command without a shell (use --exec \"sh -c '...'\")", line, p.Position)
	case len(argv) == 0:
		return nil, fmt.Errorf("--exec %q: no command", line)
	}
	return argv, nil
}

// takeExecArgs takes the child's command line out of the positional
// arguments (everything after "--"; dash is cobra's ArgsLenAtDash) or
// from --exec, into o.execArgv, and returns the databases.
func (o *watchOptions) takeExecArgs(args []string, dash int) ([]string, error) {
	if dash >= 0 {
		if o.exec != "" {
			return nil, errors.New("watch: give the command with --exec or after --, not both")
		}
		if dash == len(args) {
			return nil, errors.New("watch: no command after --")
		}
		o.execArgv = args[dash:]
		return args[:dash], nil
	}
	if o.exec != "" {
		argv, err := parseExec(o.exec)
		if err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
		o.execArgv = argv
	}
	return args, nil
}

// child is the application run in exec mode. A nil *child is valid: its
// methods then do what watch does without --exec.
type child struct {
	cmd  *exec.Cmd
	log  *slog.Logger
	ctx  context.Context // done when the child has exited
	done chan struct{}   // closed when the child has exited; waitErr is set
	// waitErr is cmd.Wait's error, written before done is closed.
	waitErr error

	sigs    chan os.Signal
	stop    chan struct{} // closed by close: the forwarder returns
	forward sync.WaitGroup
}

// startChild starts argv as walsync's child, with walsync's environment,
// standard input and the writers of g, passing execSignals on to it. Its
// context is a child of parent's values that is done when the child has
// exited, not when parent is (walsync's own SIGINT and SIGTERM go to the
// child). If parent is already done, the child is not started and the
// result is nil, nil. The caller must call close once it is done.
func startChild(parent context.Context, argv []string, g *globals, log *slog.Logger) (*child, error) {
	c := &child{
		log:  log,
		done: make(chan struct{}),
		sigs: make(chan os.Signal, len(execSignals)),
		stop: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	c.ctx = ctx
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = os.Stdin, g.stdout, g.stderr
	// If walsync dies without passing on a signal (SIGKILL, a crash), the
	// child gets SIGTERM rather than running on without backups.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}

	// Catch the signals before the child exists, so that none arriving
	// in between ends walsync with its default action; one that arrives
	// before the child is started is passed on once it is.
	signal.Notify(c.sigs, execSignals...)
	if parent.Err() != nil {
		// walsync was told to stop (SIGINT, SIGTERM) before it caught
		// signals: the application is not started.
		signal.Stop(c.sigs)
		cancel()
		log.Info("exec: stopping before the application started")
		return nil, nil
	}
	started := make(chan error, 1)
	// The parent-death signal fires when the thread that started the
	// child exits, not the process: start and wait on one locked thread,
	// which the wait holds in a system call anyway.
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.waitErr = c.cmd.Wait()
		log.Info("exec: the application exited; uploading what is committed", "status", c.status(), "state", c.cmd.ProcessState.String())
		if _, ok := errors.AsType[*exec.ExitError](c.waitErr); c.waitErr != nil && !ok {
			log.Warn("exec: wait for the application", "err", c.waitErr)
		}
		close(c.done)
		cancel()
	}()
	if err := <-started; err != nil {
		signal.Stop(c.sigs)
		cancel()
		code := exitCannotExecute
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = exitNotFound
		}
		return nil, &exitStatus{code: code, err: fmt.Errorf("watch --exec: %w", err)}
	}
	// Only the command's name is logged: its arguments may hold secrets.
	log.Info("exec: started the application", "command", argv[0], "pid", c.cmd.Process.Pid)
	c.forward.Go(c.forwardSignals)
	return c, nil
}

// forwardSignals passes each signal walsync gets on to the child until
// close. Signals that arrive after the child exited (while walsync
// uploads) are dropped.
func (c *child) forwardSignals() {
	for {
		select {
		case s := <-c.sigs:
			err := c.cmd.Process.Signal(s)
			switch {
			case errors.Is(err, os.ErrProcessDone):
				c.log.Info("exec: signal after the application exited, ignored", "signal", s.String())
			case err != nil:
				c.log.Warn("exec: pass on signal", "signal", s.String(), "err", err)
			default:
				c.log.Info("exec: passed on signal", "signal", s.String(), "pid", c.cmd.Process.Pid)
			}
		case <-c.stop:
			return
		}
	}
}

// context returns the context watch runs the replicator with: ctx without
// exec mode, else one that is done when the child has exited.
func (c *child) context(ctx context.Context) context.Context {
	if c == nil {
		return ctx
	}
	return c.ctx
}

// close stops passing on signals: from then on walsync's default actions
// apply again. Call it once the child has exited (Run has returned).
func (c *child) close() {
	if c == nil {
		return
	}
	signal.Stop(c.sigs)
	close(c.stop)
	c.forward.Wait()
}

// status returns the exit status that passes on the child's: its exit
// code, or 128+N if signal N ended it, as a shell reports it. It may only
// be called once the child has exited.
func (c *child) status() int {
	ps := c.cmd.ProcessState
	if ps == nil { // Wait failed before the process was reaped; cannot happen after a successful Start
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// result returns watch's outcome once the replicator's Run, which ended
// when the child exited, returned runErr (the final upload's error): the
// child's status, but never 0 if the final upload failed. Without exec
// mode it is runErr.
func (c *child) result(runErr error) error {
	if c == nil {
		return runErr
	}
	<-c.done // Run returns only after its context, which the child's exit cancels
	code := c.status()
	if runErr != nil {
		return &exitStatus{code: max(code, 1), err: fmt.Errorf("exec: the application exited with status %d, then the final upload failed: %w", code, runErr)}
	}
	if code != 0 {
		return &exitStatus{code: code}
	}
	return nil
}
