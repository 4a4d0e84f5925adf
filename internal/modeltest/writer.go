package modeltest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/ncruces/go-sqlite3"
)

// Writer is one application connection the model drives: a process of
// its own (the sqlite3 shell, python3) or an in-process connection.
type Writer interface {
	// Exec runs the statements in order and stops at the first error. It
	// returns the rows of every statement, as text. An SQLite error is an
	// *SQLError.
	Exec(stmts ...string) ([][]string, error)
	// Alive reports whether the connection can still be used (a shell run
	// with -bail exits at its first error).
	Alive() bool
	// Close closes the connection (a process ends its script and exits).
	Close() error
}

// SQLError is an error SQLite returned to a writer.
type SQLError struct {
	Code int // extended result code; 5 for a busy shell whatever its extension
	Msg  string
}

func (e *SQLError) Error() string { return fmt.Sprintf("sqlite error %d: %s", e.Code, e.Msg) }

// Extended result codes the model treats as legal outcomes.
const (
	codeBusy         = 5
	codeLocked       = 6
	codeBusySnapshot = 517
)

// IsBusy reports whether err is SQLITE_BUSY (any extension) or
// SQLITE_LOCKED.
func IsBusy(err error) bool {
	var e *SQLError
	return errors.As(err, &e) && (e.Code&0xff == codeBusy || e.Code&0xff == codeLocked)
}

// IsBusySnapshot reports whether err is SQLITE_BUSY_SNAPSHOT.
func IsBusySnapshot(err error) bool {
	var e *SQLError
	return errors.As(err, &e) && e.Code == codeBusySnapshot
}

// pythonWriter is the source of the python3 writer: it reads one JSON
// array of statements per line and answers one JSON object per line.
const pythonWriter = `import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5.0)
for line in sys.stdin:
    rows = []
    try:
        for s in json.loads(line):
            cur = conn.execute(s)
            rows.extend([["" if v is None else str(v) for v in r] for r in cur.fetchall()])
        res = {"ok": True, "rows": rows}
    except sqlite3.Error as e:
        res = {"ok": False, "code": getattr(e, "sqlite_errorcode", 1), "err": str(e)}
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
conn.close()
`

// procWriter is a writer process fed through its stdin.
type procWriter struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	outF   *os.File
	python bool
	seq    int
	dead   bool
	mu     sync.Mutex
}

// StartPython starts a python3 process whose sqlite3 module writes db.
// scratch is a directory for its script.
func StartPython(scratch, db string) (Writer, error) {
	script := filepath.Join(scratch, "writer.py")
	if _, err := os.Stat(script); err != nil {
		if err := os.WriteFile(script, []byte(pythonWriter), 0o600); err != nil {
			return nil, err
		}
	}
	return startProc(exec.Command("python3", script, db), true)
}

// StartShell starts the sqlite3 shell at path on db with -bail: its first
// error ends it, so a failed statement never leaves a transaction half
// applied.
func StartShell(path, db string) (Writer, error) {
	return startProc(exec.Command(path, "-bail", db), false)
}

func startProc(cmd *exec.Cmd, python bool) (*procWriter, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w // one pipe: errors stay in order with rows
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	w.Close()
	return &procWriter{cmd: cmd, stdin: stdin, out: bufio.NewReaderSize(r, 64<<10), outF: r, python: python}, nil
}

func (p *procWriter) Alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.dead
}

func (p *procWriter) Exec(stmts ...string) ([][]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return nil, errors.New("writer process has exited")
	}
	if p.python {
		return p.execPython(stmts)
	}
	return p.execShell(stmts)
}

func (p *procWriter) execPython(stmts []string) ([][]string, error) {
	b, _ := json.Marshal(stmts)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.dead = true
		return nil, fmt.Errorf("python writer: %w", err)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		p.dead = true
		return nil, fmt.Errorf("python writer: %w (output %q)", err, line)
	}
	var res struct {
		OK   bool
		Rows [][]string
		Code int
		Err  string
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return nil, fmt.Errorf("python writer: %q: %w", line, err)
	}
	if !res.OK {
		return res.Rows, &SQLError{Code: res.Code, Msg: res.Err}
	}
	return res.Rows, nil
}

// shellError matches the lines the sqlite3 shell prints for an error.
var shellError = regexp.MustCompile(`^(Error|Runtime error|Parse error)[^:]*: (.*)$`)

// shellCode finds the result code at the end of a shell error message.
var shellCode = regexp.MustCompile(`\((\d+)\)$`)

func (p *procWriter) execShell(stmts []string) ([][]string, error) {
	p.seq++
	ack := fmt.Sprintf("ack-%d", p.seq)
	var sb strings.Builder
	for _, s := range stmts {
		sb.WriteString(s)
		sb.WriteString(";\n")
	}
	fmt.Fprintf(&sb, "SELECT '%s';\n", ack)
	if _, err := io.WriteString(p.stdin, sb.String()); err != nil {
		p.dead = true
		return nil, p.exited(nil, fmt.Errorf("sqlite3 stdin: %w", err))
	}
	var rows [][]string
	var sqlErr *SQLError
	for {
		line, err := p.out.ReadString('\n')
		line = strings.TrimRight(line, "\n")
		if err != nil {
			p.dead = true
			return rows, p.exited(sqlErr, err)
		}
		if line == ack {
			if sqlErr != nil {
				return rows, sqlErr
			}
			return rows, nil
		}
		if m := shellError.FindStringSubmatch(line); m != nil && sqlErr == nil {
			sqlErr = &SQLError{Code: 1, Msg: m[2]}
			if c := shellCode.FindStringSubmatch(m[2]); c != nil {
				sqlErr.Code, _ = strconv.Atoi(c[1])
			}
			if strings.Contains(m[2], "database is locked") {
				sqlErr.Code = codeBusy
			}
			continue
		}
		rows = append(rows, strings.Split(line, "|"))
	}
}

// exited waits for a shell that stopped answering and returns its error:
// the SQLite error that made -bail stop it, if it printed one.
func (p *procWriter) exited(sqlErr *SQLError, cause error) error {
	p.stdin.Close()
	werr := p.cmd.Wait()
	p.outF.Close()
	if sqlErr != nil {
		return sqlErr
	}
	return fmt.Errorf("sqlite3 exited (%v): %w", werr, cause)
}

func (p *procWriter) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return nil
	}
	p.dead = true
	p.stdin.Close()
	rest, _ := io.ReadAll(p.out)
	err := p.cmd.Wait()
	p.outF.Close()
	if err != nil {
		return fmt.Errorf("writer exited with %v: %s", err, rest)
	}
	return nil
}

// connWriter is an in-process connection of github.com/ncruces/go-sqlite3.
type connWriter struct {
	c *sqlite3.Conn
}

// OpenConn opens an in-process connection to db through the VFS named
// vfsName ("" for the default).
func OpenConn(db, vfsName string) (Writer, error) {
	uri := "file:" + db
	if vfsName != "" {
		uri += "?vfs=" + vfsName
	}
	c, err := sqlite3.Open(uri)
	if err != nil {
		return nil, sqlErr(err)
	}
	return &connWriter{c: c}, nil
}

func (w *connWriter) Alive() bool { return w.c != nil }

func (w *connWriter) Exec(stmts ...string) ([][]string, error) {
	var rows [][]string
	for _, s := range stmts {
		st, _, err := w.c.Prepare(s)
		if err != nil {
			return rows, sqlErr(err)
		}
		for st.Step() {
			row := make([]string, st.ColumnCount())
			for i := range row {
				row[i] = st.ColumnText(i)
			}
			rows = append(rows, row)
		}
		err = st.Err()
		st.Close()
		if err != nil {
			return rows, sqlErr(err)
		}
	}
	return rows, nil
}

func (w *connWriter) Close() error {
	if w.c == nil {
		return nil
	}
	err := w.c.Close()
	w.c = nil
	return sqlErr(err)
}

// sqlErr turns an ncruces error into an *SQLError.
func sqlErr(err error) error {
	var e *sqlite3.Error
	var code sqlite3.ErrorCode
	var xcode sqlite3.ExtendedErrorCode
	switch {
	case errors.As(err, &e):
		return &SQLError{Code: int(e.ExtendedCode()), Msg: e.Error()}
	case errors.As(err, &xcode):
		return &SQLError{Code: int(xcode), Msg: err.Error()}
	case errors.As(err, &code):
		return &SQLError{Code: int(code), Msg: err.Error()}
	}
	return err
}
