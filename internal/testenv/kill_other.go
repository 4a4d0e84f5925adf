//go:build !linux

package testenv

import "os/exec"

// killWithParent does nothing where there is no parent-death signal: a test
// binary that dies without running Main's cleanup leaves the server running.
func killWithParent(cmd *exec.Cmd) {}
