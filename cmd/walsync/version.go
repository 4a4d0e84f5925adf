package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/walsync/walsync/replicate"
)

// version is set with -ldflags "-X main.version=v1.2.3"; otherwise the
// module version from the build info is used.
var version = ""

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print walsync's version, the commit it was built from and the linked SQLite version",
		Long: `version prints walsync's version (set at link time, else the module version:
v1.2.3 when installed with go install ...@v1.2.3, "(devel)" when built from a
checkout), then the commit it was built from, that commit's time and
"modified" if the checkout had uncommitted changes (from the build
information Go records when building inside a git checkout with
-buildvcs, its default), then the SQLite, Go, OS and architecture.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bi, _ := debug.ReadBuildInfo()
			sv, err := replicate.SQLiteVersion()
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, versionLine(bi, version, sv))
			return nil
		},
	}
}

// versionLine formats the output of `walsync version`:
//
//	walsync v1.2.3 (SQLite 3.54.1, go1.26.8 linux/amd64)
//	walsync (devel) commit 443208d5c1a0… 2026-12-02T10:50:00Z modified (SQLite 3.54.1, go1.26.8 linux/amd64)
//
// linked (the -X main.version value) wins over the build info's module
// version. The commit part (the full revision, its time, "modified") is
// there only when the build info holds a revision; bi may be nil.
func versionLine(bi *debug.BuildInfo, linked, sqliteVersion string) string {
	v := linked
	if v == "" && bi != nil {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	parts := []string{"walsync", v}
	if bi != nil {
		var rev, at string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" {
			parts = append(parts, "commit", rev)
			if at != "" {
				parts = append(parts, at)
			}
			if modified {
				parts = append(parts, "modified")
			}
		}
	}
	return fmt.Sprintf("%s (SQLite %s, %s %s/%s)", strings.Join(parts, " "), sqliteVersion,
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
