package testenv

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill cmd's process when the thread that
// starts it exits, so a test binary that dies without running Main's cleanup
// (a panic, a timeout, SIGKILL) does not leave the server running.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
