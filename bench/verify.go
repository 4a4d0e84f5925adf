package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ncruces/go-sqlite3"

	"github.com/walsync/walsync/replicate"
)

// verifyAll restores every database from target and compares its rows with
// the source. It returns the number of rows written by the writer.
func verifyAll(ctx context.Context, cfg Config, target, dbDir string, n int, work string) (int64, error) {
	store, err := cfg.Open(ctx, target)
	if err != nil {
		return 0, err
	}
	outDir := filepath.Join(work, "restored")
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return 0, err
	}
	var commits int64
	var errs []error
	for i := range n {
		src := DBPath(dbDir, i)
		name := filepath.Base(src)
		out := filepath.Join(outDir, name)
		if _, err := replicate.Restore(ctx, store, name, out, replicate.RestoreOptions{Check: replicate.IntegrityQuick}); err != nil {
			errs = append(errs, err)
			continue
		}
		want, rows, err := HashDB(src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got, _, err := HashDB(out)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if got != want {
			errs = append(errs, fmt.Errorf("%s: restored rows differ from the source", name))
		}
		commits += rows - 1
		os.Remove(out)
	}
	if len(errs) > 0 {
		return commits, fmt.Errorf("%d of %d restores failed; first: %w", len(errs), n, errs[0])
	}
	return commits, nil
}

// HashDB returns a SHA-256 over every row of the bench table, in id order,
// and the number of rows.
func HashDB(path string) (string, int64, error) {
	c, err := sqlite3.OpenFlags("file:"+path+"?mode=ro", sqlite3.OPEN_READONLY|sqlite3.OPEN_URI)
	if err != nil {
		return "", 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer c.Close()
	st, _, err := c.Prepare("SELECT id, ts, v FROM t ORDER BY id")
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", path, err)
	}
	defer st.Close()
	h := sha256.New()
	var rows int64
	var b [16]byte
	for st.Step() {
		binary.LittleEndian.PutUint64(b[:], uint64(st.ColumnInt64(0)))
		binary.LittleEndian.PutUint64(b[8:], uint64(st.ColumnInt64(1)))
		h.Write(b[:])
		h.Write(st.ColumnRawBlob(2))
		rows++
	}
	if err := st.Err(); err != nil {
		return "", 0, errors.Join(fmt.Errorf("%s", path), err)
	}
	return hex.EncodeToString(h.Sum(nil)), rows, nil
}
