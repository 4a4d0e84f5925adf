package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ncruces/go-sqlite3"
)

// fillRowBytes is the payload of one filler row: one row per 4 KiB page.
const fillRowBytes = 4000

// fillBatch is the number of filler rows inserted per transaction.
const fillBatch = 8192

// fillDB grows the bench database at path by about size bytes of rows of
// random (incompressible) data in table t, with negative ids so that the
// writer's sequence numbers (max(id)+1) are unchanged. It must run before
// any other connection opens the database. It returns the rows added.
func fillDB(ctx context.Context, path string, size int64) (int64, error) {
	rows := size / 4096
	if rows <= 0 {
		return 0, nil
	}
	c, err := sqlite3.Open("file:" + path)
	if err != nil {
		return 0, fmt.Errorf("fill %s: %w", path, err)
	}
	defer c.Close()
	// A rollback journal holds only the pages a batch changes, where the
	// WAL would hold every new page until the checkpoint.
	if err := c.Exec("PRAGMA journal_mode=delete; PRAGMA synchronous=off"); err != nil {
		return 0, fmt.Errorf("fill %s: %w", path, err)
	}
	st, _, err := c.Prepare(`WITH RECURSIVE s(x) AS (SELECT ?1 UNION ALL SELECT x+1 FROM s WHERE x < ?2)
		INSERT INTO t(id, ts, v) SELECT -x, 0, randomblob(?3) FROM s`)
	if err != nil {
		return 0, fmt.Errorf("fill %s: %w", path, err)
	}
	defer st.Close()
	for from := int64(1); from <= rows; from += fillBatch {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		to := min(from+fillBatch-1, rows)
		if err := errors.Join(st.BindInt64(1, from), st.BindInt64(2, to), st.BindInt64(3, fillRowBytes), st.Exec()); err != nil {
			return 0, fmt.Errorf("fill %s: %w", path, err)
		}
		if err := st.Reset(); err != nil {
			return 0, fmt.Errorf("fill %s: %w", path, err)
		}
	}
	if err := errors.Join(st.Close(), c.Exec("PRAGMA journal_mode=wal")); err != nil {
		return 0, fmt.Errorf("fill %s: %w", path, err)
	}
	return rows, c.Close()
}

// copyFile copies the file src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
