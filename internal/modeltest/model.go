package modeltest

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// The database the model drives: a log of rows numbered by a global
// sequence, accounts whose balances always sum to a constant, and blobs
// that come and go (free pages, overflow chains).
const (
	// Accounts is the number of rows of the accounts table.
	Accounts = 32
	// InitialBalance is each account's balance at the start.
	InitialBalance = 1000
	// TotalBalance is the sum of the balances in every committed state.
	TotalBalance = Accounts * InitialBalance
)

// Schema returns the statements that create the model's database in WAL
// mode with its initial state (sequence 0, epoch 0).
func Schema() []string {
	return []string{
		"PRAGMA journal_mode=WAL",
		"BEGIN",
		"CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
		"CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
		"CREATE TABLE log(seq INTEGER PRIMARY KEY, txn INTEGER NOT NULL, body TEXT NOT NULL)",
		"CREATE INDEX log_txn ON log(txn)",
		"CREATE TABLE blobs(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, data BLOB NOT NULL)",
		"INSERT INTO meta(k, v) VALUES ('epoch', 0)",
		fmt.Sprintf("INSERT INTO accounts(id, balance) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < %d) SELECT i, %d FROM c",
			Accounts, InitialBalance),
		"COMMIT",
	}
}

// Transfer moves Amount from account From to account To.
type Transfer struct{ From, To, Amount int64 }

// Txn is one planned transaction: log rows FirstSeq..LastSeq, transfers,
// and at most one blob inserted and one deleted. It is planned against
// the model's current state and becomes part of it only through
// [Model.Committed].
type Txn struct {
	N         int64 // commit number, stored in log.txn
	FirstSeq  int64
	LastSeq   int64
	BodyLen   int // length of every body of the transaction
	Transfers []Transfer
	BlobSize  int   // size of the blob inserted (id FirstSeq), 0 for none
	DropBlob  int64 // id of the blob deleted, 0 for none
	TrimTo    int64 // log rows below this seq are deleted, 0 for none
}

// Rows returns the number of log rows.
func (t *Txn) Rows() int64 { return t.LastSeq - t.FirstSeq + 1 }

// Bytes returns about how many bytes the transaction writes.
func (t *Txn) Bytes() int64 { return t.Rows()*int64(t.BodyLen+16) + int64(t.BlobSize) }

// String describes the transaction for the action history.
func (t *Txn) String() string {
	s := fmt.Sprintf("txn %d seq %d..%d (%d rows x %d B", t.N, t.FirstSeq, t.LastSeq, t.Rows(), t.BodyLen)
	if t.BlobSize > 0 {
		s += fmt.Sprintf(", blob %d B", t.BlobSize)
	}
	if t.TrimTo > 0 {
		s += fmt.Sprintf(", log trimmed to %d", t.TrimTo)
	}
	return s + ")"
}

// Stmts returns the statements of the transaction, without BEGIN and
// COMMIT.
func (t *Txn) Stmts() []string {
	first, n := t.FirstSeq, t.Rows()
	stmts := []string{fmt.Sprintf(
		"INSERT INTO log(seq, txn, body) WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM c WHERE i < %d) "+
			"SELECT %d+i, %d, printf('%%.*c', %d, char(65 + (%d+i) %% 26)) FROM c", n-1, first, t.N, t.BodyLen, first)}
	for _, tr := range t.Transfers {
		stmts = append(stmts,
			fmt.Sprintf("UPDATE accounts SET balance = balance - %d WHERE id = %d", tr.Amount, tr.From),
			fmt.Sprintf("UPDATE accounts SET balance = balance + %d WHERE id = %d", tr.Amount, tr.To))
	}
	if t.BlobSize > 0 {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO blobs(id, seq, data) VALUES (%d, %d, randomblob(%d))", first, first, t.BlobSize))
	}
	if t.DropBlob != 0 {
		stmts = append(stmts, fmt.Sprintf("DELETE FROM blobs WHERE id = %d", t.DropBlob))
	}
	if t.TrimTo != 0 {
		stmts = append(stmts, fmt.Sprintf("DELETE FROM log WHERE seq < %d", t.TrimTo))
	}
	return stmts
}

// Size is the size class of a planned transaction.
type Size int

// Size classes, from one row to several MiB.
const (
	Small  Size = iota // 1 to 5 short rows
	Medium             // tens to hundreds of rows
	Large              // hundreds of KiB to a few MiB
	Huge               // several MiB
)

// State is the content of the database after a commit, as the model
// knows it: enough to recognise an exact committed prefix.
type State struct {
	Epoch     int64 // meta.epoch: bumped when the file is replaced
	N         int64 // max(log.txn)
	LastSeq   int64 // max(log.seq); the log holds exactly FirstSeq..LastSeq
	FirstSeq  int64 // min(log.seq), 1 until the log is trimmed (0 if empty)
	BodyBytes int64 // sum(length(log.body))
	BalHash   uint64
	Blobs     int64 // count(*) of blobs
	BlobIDs   int64 // sum(id) of blobs
	BlobBytes int64 // sum(length(data)) of blobs
	At        time.Time
}

// String describes a state briefly.
func (s State) String() string {
	return fmt.Sprintf("epoch %d seq %d (txn %d)", s.Epoch, s.LastSeq, s.N)
}

// Fields lists every field but the time, for a report.
func (s State) Fields() string {
	return fmt.Sprintf("epoch=%d txn=%d seq=%d..%d body_bytes=%d balances=%x blobs=%d blob_ids=%d blob_bytes=%d",
		s.Epoch, s.N, s.FirstSeq, s.LastSeq, s.BodyBytes, s.BalHash, s.Blobs, s.BlobIDs, s.BlobBytes)
}

type stateKey struct{ epoch, seq int64 }

type blob struct{ id, size int64 }

// logRun is the log rows of one committed transaction.
type logRun struct{ first, last, bodyLen int64 }

// DefaultTrimAbove is the default of [Model.TrimAbove].
const DefaultTrimAbove = 24 << 20

// Model is what the writers have committed, one State per commit.
type Model struct {
	// TrimAbove is the size of the log past which transactions delete its
	// older half, so that a long run's database (and every restore) stays
	// bounded.
	TrimAbove int64

	states   []State
	index    map[stateKey]int
	balances [Accounts]int64
	blobs    []blob   // oldest first
	runs     []logRun // the log, oldest first
	cur      State
}

// NewModel returns the model of a database just created by [Schema].
func NewModel() *Model {
	m := &Model{TrimAbove: DefaultTrimAbove, index: make(map[stateKey]int)}
	for i := range m.balances {
		m.balances[i] = InitialBalance
	}
	m.cur.BalHash = balanceHash(m.balances[:])
	m.cur.At = time.Now()
	m.record()
	return m
}

func (m *Model) record() {
	m.index[stateKey{m.cur.Epoch, m.cur.LastSeq}] = len(m.states)
	m.states = append(m.states, m.cur)
}

// Current returns the state after the last commit.
func (m *Model) Current() State { return m.cur }

// Commits returns the number of states recorded.
func (m *Model) Commits() int { return len(m.states) - 1 }

// Plan returns the next transaction of the given size, at most maxBytes
// big, without changing the model. bodyExtra changes the body length so
// that a transaction that is rolled back differs from the one that later
// takes its sequence numbers.
func (m *Model) Plan(rng *rand.Rand, size Size, maxBytes int64, bodyExtra int) *Txn {
	var rows, body int
	switch size {
	case Small:
		rows, body = 1+rng.IntN(5), 10+rng.IntN(190)
	case Medium:
		rows, body = 10+rng.IntN(300), 50+rng.IntN(950)
	case Large:
		rows, body = 300+rng.IntN(2700), 100+rng.IntN(1900)
	default:
		rows, body = 2000+rng.IntN(3000), 1000+rng.IntN(1000)
	}
	if rng.IntN(8) == 0 {
		body += 4100 // overflow pages
	}
	body += bodyExtra
	for rows > 1 && int64(rows)*int64(body+16) > maxBytes {
		rows /= 2
	}
	t := &Txn{N: m.cur.N + 1, FirstSeq: m.cur.LastSeq + 1, BodyLen: body}
	t.LastSeq = t.FirstSeq + int64(rows) - 1
	for range 1 + rng.IntN(3) {
		from, to := 1+rng.Int64N(Accounts), 1+rng.Int64N(Accounts)
		t.Transfers = append(t.Transfers, Transfer{from, to, 1 + rng.Int64N(100)})
	}
	if rng.IntN(6) == 0 {
		sz := 100 + rng.IntN(4000)
		if size >= Large {
			sz = 50_000 + rng.IntN(950_000)
		}
		if room := maxBytes - t.Bytes(); int64(sz) > room {
			sz = int(max(room, 100))
		}
		t.BlobSize = sz
	}
	if len(m.blobs) > 0 && rng.IntN(4) == 0 {
		t.DropBlob = m.blobs[0].id
	}
	if m.cur.BodyBytes > m.TrimAbove {
		var dropped int64
		for _, run := range m.runs {
			if dropped > m.cur.BodyBytes/2 {
				t.TrimTo = run.first
				break
			}
			dropped += (run.last - run.first + 1) * run.bodyLen
		}
	}
	return t
}

// Committed records that t committed, acknowledged at time at. It panics
// if t was not planned against the current state.
func (m *Model) Committed(t *Txn, at time.Time) {
	if t.FirstSeq != m.cur.LastSeq+1 || t.N != m.cur.N+1 {
		panic(fmt.Sprintf("modeltest: %v committed on state %v", t, m.cur))
	}
	for _, tr := range t.Transfers {
		m.balances[tr.From-1] -= tr.Amount
		m.balances[tr.To-1] += tr.Amount
	}
	if t.DropBlob != 0 {
		for i, b := range m.blobs {
			if b.id == t.DropBlob {
				m.blobs = append(m.blobs[:i], m.blobs[i+1:]...)
				m.cur.Blobs--
				m.cur.BlobIDs -= b.id
				m.cur.BlobBytes -= b.size
				break
			}
		}
	}
	if t.BlobSize > 0 {
		m.blobs = append(m.blobs, blob{t.FirstSeq, int64(t.BlobSize)})
		m.cur.Blobs++
		m.cur.BlobIDs += t.FirstSeq
		m.cur.BlobBytes += int64(t.BlobSize)
	}
	if t.TrimTo != 0 {
		for len(m.runs) > 0 && m.runs[0].first < t.TrimTo {
			run := m.runs[0]
			m.cur.BodyBytes -= (run.last - run.first + 1) * run.bodyLen
			m.runs = m.runs[1:]
		}
	}
	m.runs = append(m.runs, logRun{t.FirstSeq, t.LastSeq, int64(t.BodyLen)})
	m.cur.FirstSeq = m.runs[0].first
	m.cur.N, m.cur.LastSeq = t.N, t.LastSeq
	m.cur.BodyBytes += t.Rows() * int64(t.BodyLen)
	m.cur.BalHash = balanceHash(m.balances[:])
	m.cur.At = at
	m.record()
}

// NewEpoch records that the database file was replaced by a copy of its
// current content whose meta.epoch is one higher, and returns that epoch.
func (m *Model) NewEpoch(at time.Time) int64 {
	m.cur.Epoch++
	m.cur.At = at
	m.record()
	return m.cur.Epoch
}

// Lookup returns the recorded state of an epoch at a sequence number.
func (m *Model) Lookup(epoch, seq int64) (State, bool) {
	i, ok := m.index[stateKey{epoch, seq}]
	if !ok {
		return State{}, false
	}
	return m.states[i], true
}

func balanceHash(b []int64) uint64 {
	h := fnv.New64a()
	for _, v := range b {
		h.Write([]byte(strconv.FormatInt(v, 10)))
		h.Write([]byte{','})
	}
	return h.Sum64()
}

// Query runs one SQL statement and returns its rows as text.
type Query func(sql string) ([][]string, error)

// Observe reads the state of a database through q. integrity runs
// PRAGMA integrity_check too.
func Observe(q Query, integrity bool) (State, error) {
	var s State
	one := func(sql string, cols int) ([]string, error) {
		rows, err := q(sql)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sql, err)
		}
		if len(rows) != 1 || len(rows[0]) != cols {
			return nil, fmt.Errorf("%s: got %q, want one row of %d columns", sql, rows, cols)
		}
		return rows[0], nil
	}
	ints := func(r []string) ([]int64, error) {
		out := make([]int64, len(r))
		for i, v := range r {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("column %d: %q is not an integer", i, v)
			}
			out[i] = n
		}
		return out, nil
	}
	if integrity {
		rows, err := q("PRAGMA integrity_check")
		if err != nil {
			return s, fmt.Errorf("integrity_check: %w", err)
		}
		if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] != "ok" {
			return s, fmt.Errorf("integrity_check: %q", rows)
		}
	}
	r, err := one("SELECT count(*), coalesce(min(seq),0), coalesce(max(seq),0), coalesce(sum(length(body)),0), coalesce(max(txn),0) FROM log", 5)
	if err != nil {
		return s, err
	}
	v, err := ints(r)
	if err != nil {
		return s, err
	}
	count := v[0]
	s.FirstSeq, s.LastSeq, s.BodyBytes, s.N = v[1], v[2], v[3], v[4]
	if count > 0 && count != s.LastSeq-s.FirstSeq+1 {
		return s, fmt.Errorf("log has gaps: %d rows, seq %d..%d", count, s.FirstSeq, s.LastSeq)
	}
	if r, err = one("SELECT count(*) FROM log WHERE body <> printf('%.*c', length(body), char(65 + seq % 26))", 1); err != nil {
		return s, err
	} else if r[0] != "0" {
		return s, fmt.Errorf("%s log rows have a body that no writer wrote", r[0])
	}
	if r, err = one("SELECT coalesce(sum(balance),0), count(*), coalesce(group_concat(balance, ','),'') FROM (SELECT balance FROM accounts ORDER BY id)", 3); err != nil {
		return s, err
	}
	if r[0] != strconv.Itoa(TotalBalance) || r[1] != strconv.Itoa(Accounts) {
		return s, fmt.Errorf("accounts: sum %s over %s rows, want %d over %d", r[0], r[1], TotalBalance, Accounts)
	}
	var bal []int64
	for f := range strings.SplitSeq(r[2], ",") {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return s, fmt.Errorf("accounts: balance %q", f)
		}
		bal = append(bal, n)
	}
	s.BalHash = balanceHash(bal)
	if r, err = one("SELECT count(*), coalesce(sum(id),0), coalesce(sum(length(data)),0) FROM blobs", 3); err != nil {
		return s, err
	}
	if v, err = ints(r); err != nil {
		return s, err
	}
	s.Blobs, s.BlobIDs, s.BlobBytes = v[0], v[1], v[2]
	if r, err = one("SELECT v FROM meta WHERE k = 'epoch'", 1); err != nil {
		return s, err
	}
	if v, err = ints(r); err != nil {
		return s, err
	}
	s.Epoch = v[0]
	return s, nil
}

// Match checks that an observed state is a state the model recorded (an
// exact committed prefix) and returns the recorded one.
func (m *Model) Match(got State) (State, error) {
	want, ok := m.Lookup(got.Epoch, got.LastSeq)
	if !ok {
		return State{}, fmt.Errorf("%v is not a committed state (last committed: %v)", got, m.cur)
	}
	got.At = want.At
	if got != want {
		return want, fmt.Errorf("content differs from the committed state at %v:\n got  %s\n want %s", want, got.Fields(), want.Fields())
	}
	return want, nil
}
