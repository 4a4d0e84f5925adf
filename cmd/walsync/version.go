package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/walsync/walsync/replicate"
)

// version is set with -ldflags "-X main.version=v1.2.3"; otherwise the
// module version from the build info is used.
var version = ""

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print walsync's version and the linked SQLite version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "" {
				v = bi.Main.Version
			}
			sv, err := replicate.SQLiteVersion()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "walsync %s (SQLite %s, %s %s/%s)\n", v, sv, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
