// Package hook is the source of the file the peer-suite harness
// (internal/peersuite) adds to each of ncruces' VFS test suites: it is
// copied into the suite's directory, with its package clause and the
// dirstore import rewritten, and compiled there. Nothing in walsync
// imports it.
//
// When WALSYNC_PEER_TARGET names a directory, the test binary replicates
// every database it opens through the walsync VFS into
// $WALSYNC_PEER_TARGET/<suite directory> (a local directory store, the same
// code as file:// targets):
//
//   - "walsync" is the walsync VFS over the OS VFS, and "plain" the OS VFS;
//   - the default VFS ("" and "os") becomes "walsync" (the harness patches
//     ncruces' registry to look up "peersuite-default" for them);
//   - "adiantum", "xts", "torn-adiantum" and "torn-xts", if registered, are
//     replaced by the walsync VFS stacked over them (the supported order:
//     walsync above the encryption).
//
// WALSYNC_PEER_SYNC_INTERVAL sets the sync interval (a Go duration, default
// 0: upload at once, the most replication work per commit). Warnings and
// errors of the replicator and the VFS go to stderr, prefixed
// "walsync-peer:".
package hook

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	sqlite3vfs "github.com/ncruces/go-sqlite3/vfs"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/vfs"
)

// Environment variables read by the hook.
const (
	envTarget   = "WALSYNC_PEER_TARGET"
	envInterval = "WALSYNC_PEER_SYNC_INTERVAL"
)

// defaultName is the registry name the patched vfs.Find returns for "" and
// "os".
const defaultName = "peersuite-default"

func init() {
	target := os.Getenv(envTarget)
	if target == "" {
		return
	}
	if err := setup(target); err != nil {
		fmt.Fprintln(os.Stderr, "walsync-peer: setup:", err)
		os.Exit(2)
	}
}

// setup registers the VFSes described in the package documentation.
func setup(target string) error {
	wd, err := os.Getwd() // go test runs the binary in the package directory
	if err != nil {
		return err
	}
	store, err := dirstore.Open(filepath.Join(target, filepath.Base(wd)))
	if err != nil {
		return err
	}
	var interval time.Duration
	if s := os.Getenv(envInterval); s != "" {
		if interval, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf("%s: %w", envInterval, err)
		}
	}
	logger := slog.New(slog.NewTextHandler(prefixWriter{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := replicate.New(store, replicate.Options{SyncInterval: interval, Logger: logger})
	go r.Run(context.Background()) // for the life of the test binary

	base := sqlite3vfs.Find("") // the OS VFS: the registry is not patched yet
	sqlite3vfs.Register("plain", base)
	if _, err := vfs.Register("walsync", r, vfs.Options{Base: base, Logger: logger}); err != nil {
		return err
	}
	for name, enc := range map[string]vfs.Encryption{
		"adiantum": vfs.Adiantum, "xts": vfs.XTS,
		"torn-adiantum": vfs.Adiantum, "torn-xts": vfs.XTS,
	} {
		inner := sqlite3vfs.Find(name)
		if inner == nil {
			continue
		}
		sqlite3vfs.Unregister(name)
		if _, err := vfs.Register(name, r, vfs.Options{Base: inner, Encryption: enc, Logger: logger}); err != nil {
			return err
		}
	}
	sqlite3vfs.Register(defaultName, sqlite3vfs.Find("walsync"))
	if sqlite3vfs.Find("") != sqlite3vfs.Find("walsync") {
		return fmt.Errorf("the registry is not patched: the default VFS is not walsync")
	}
	return nil
}

// prefixWriter writes log lines to stderr with a prefix the harness counts.
type prefixWriter struct{}

func (prefixWriter) Write(p []byte) (int, error) {
	if _, err := fmt.Fprintf(os.Stderr, "walsync-peer: %s", p); err != nil {
		return 0, err
	}
	return len(p), nil
}
