// Command walsync continuously backs up SQLite databases to S3 (or a local
// directory) and restores them to any point in time. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	// Like restic: a lower GC target unless the user chose one. walsync's
	// heap is small and short-lived; a lower target keeps RSS near it.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd()
	cmd.SetArgs(os.Args[1:])
	if err := cmd.ExecuteContext(ctx); err != nil {
		code := report(os.Stderr, err)
		stop()
		os.Exit(code)
	}
}
