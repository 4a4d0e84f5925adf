package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/ncruces/go-sqlite3/vfs/adiantum" // integrity checks of encrypted restores
	_ "github.com/ncruces/go-sqlite3/vfs/xts"

	"github.com/walsync/walsync/internal/dirstore"
	"github.com/walsync/walsync/replicate"
)

// Keys the suites use (mptest's, and the torn test's), to open encrypted
// restores for the integrity check.
const (
	mptestKey = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tornKey   = "abababababababababababababababababababababababababababababababab"
)

// verifyTarget restores every database in every suite's store under
// target, with a full integrity check, and returns how many restored. The
// suites deleted their databases when each test ended, so the restore is
// compared with nothing: it proves that what was replicated is a complete,
// consistent database. Any database that does not restore is an error, and
// so is a target with none.
func verifyTarget(ctx context.Context, target string) (int, error) {
	ents, err := os.ReadDir(target)
	if err != nil {
		return 0, err
	}
	out, err := os.MkdirTemp("", "walsync-peersuite-restore-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(out)
	var errs []error
	restored := 0
	for _, e := range ents {
		store, err := dirstore.Open(filepath.Join(target, e.Name()))
		if err != nil {
			return restored, err
		}
		dbs, err := replicate.ListDatabases(ctx, store)
		if err != nil {
			store.Close()
			return restored, err
		}
		n := 0
		for i, db := range dbs {
			opts := replicate.RestoreOptions{CheckParams: checkParams(db.Name)}
			res, err := replicate.Restore(ctx, store, db.Name, filepath.Join(out, fmt.Sprintf("%s-%d.db", e.Name(), i)), opts)
			if err != nil {
				fmt.Printf("peersuite:   restore %s/%s: %v\n", e.Name(), db.Name, err)
				errs = append(errs, fmt.Errorf("%s: %w", db.Name, err))
				continue
			}
			n++
			if n <= 3 {
				fmt.Printf("peersuite:   restored %s/%s: TXID %d, %d files, %d pages of %d bytes, integrity ok\n",
					e.Name(), db.Name, res.TXID, res.Files, res.Pages, res.PageSize)
			}
		}
		store.Close()
		fmt.Printf("peersuite:   %s: %d of %d databases in the target restored\n", e.Name(), n, len(dbs))
		restored += n
	}
	if restored == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("the target holds no database"))
	}
	return restored, errors.Join(errs...)
}

// checkParams returns the URI parameters that open the restore of name for
// the integrity check: the suites encode the environment in the test's
// temporary directory name.
func checkParams(name string) string {
	key := mptestKey
	if strings.Contains(name, "Torn") {
		key = tornKey
	}
	switch {
	case strings.Contains(name, "adiantum"):
		return "vfs=adiantum&hexkey=" + key
	case strings.Contains(name, "xts"):
		return "vfs=xts&hexkey=" + key
	}
	return ""
}
