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
	"sync"
	"sync/atomic"

	"github.com/ncruces/go-sqlite3"
)

// verifyWorkers is the number of databases restored at the same time.
const verifyWorkers = 2

// verify restores every database of r with tl and compares its rows with
// the source. It returns the number of rows the writer committed.
func (r *run) verify(ctx context.Context, tl tool) (int64, error) {
	outDir := filepath.Join(r.dir, "restored")
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return 0, err
	}
	var (
		mu      sync.Mutex
		commits int64
		failed  int
		first   error
		done    int
		next    atomic.Int64
	)
	var wg sync.WaitGroup
	for range verifyWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= r.n || ctx.Err() != nil {
					return
				}
				rows, err := r.verifyOne(ctx, tl, i, outDir)
				mu.Lock()
				commits += rows
				if err != nil {
					failed++
					if first == nil {
						first = err
					}
				}
				done++
				if done%100 == 0 {
					r.cfg.Progress.Statusf("%s: verified %d of %d databases", r.prefix, done, r.n)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return commits, err
	}
	if failed > 0 {
		return commits, fmt.Errorf("%d of %d restores failed; first: %w", failed, r.n, first)
	}
	return commits, nil
}

// verifyOne restores database i and compares it with its source. It
// returns the number of rows the writer added to it.
func (r *run) verifyOne(ctx context.Context, tl tool, i int, outDir string) (int64, error) {
	src := DBPath(r.dbDir, i)
	name := filepath.Base(src)
	out := filepath.Join(outDir, name)
	defer func() {
		for _, s := range []string{"", "-wal", "-shm"} {
			os.Remove(out + s)
		}
	}()
	if err := tl.restore(ctx, r, name, out); err != nil {
		return 0, fmt.Errorf("restore %s: %w", name, err)
	}
	want, rows, err := HashDB(src)
	if err != nil {
		return 0, err
	}
	got, gotRows, err := HashDB(out)
	if err != nil {
		return 0, err
	}
	if got != want {
		return 0, fmt.Errorf("%s: restored rows differ from the source (%d rows, source %d)", name, gotRows, rows)
	}
	return rows - 1, nil
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
