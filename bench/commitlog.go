package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// commitLog is where the writer records its commits, one line each:
// "<database index> <id> <unix nanoseconds>". It is buffered and never
// synced: it is read after the writer exited, on the same host. A nil
// *commitLog records nothing.
type commitLog struct {
	f *os.File
	w *bufio.Writer
}

// createCommitLog creates the log at path; "" gives a nil log.
func createCommitLog(path string) (*commitLog, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create commit log: %w", err)
	}
	return &commitLog{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// add records that database db committed the row with id seq at t. A
// write error is kept by the buffer and returned by close.
func (l *commitLog) add(db int, seq int64, t time.Time) {
	if l == nil {
		return
	}
	var b [64]byte
	line := strconv.AppendInt(b[:0], int64(db), 10)
	line = append(line, ' ')
	line = strconv.AppendInt(line, seq, 10)
	line = append(line, ' ')
	line = strconv.AppendInt(line, t.UnixNano(), 10)
	l.w.Write(append(line, '\n'))
}

// close flushes and closes the log.
func (l *commitLog) close() error {
	if l == nil {
		return nil
	}
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write commit log: %w", err)
	}
	return nil
}

// commit is one commit of the writer: database index, the id of the row
// it inserted (its sequence number in that database) and when SQLite
// acknowledged it, in Unix nanoseconds.
type commit struct {
	db  int
	seq int64
	at  int64
}

// readCommitLog reads the commits recorded in the log at path.
func readCommitLog(path string) ([]commit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read commit log: %w", err)
	}
	defer f.Close()
	var out []commit
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		c, err := parseCommit(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("read commit log %s line %d: %w", path, n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read commit log: %w", err)
	}
	return out, nil
}

// parseCommit parses one line of a commit log.
func parseCommit(line string) (commit, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return commit{}, fmt.Errorf("%q: want 3 fields", line)
	}
	db, err1 := strconv.Atoi(f[0])
	seq, err2 := strconv.ParseInt(f[1], 10, 64)
	at, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || db < 0 {
		return commit{}, fmt.Errorf("%q: want three integers", line)
	}
	return commit{db: db, seq: seq, at: at}, nil
}
