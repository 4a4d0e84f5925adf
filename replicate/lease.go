package replicate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// A database's lease fences it against a second writer: only the process
// holding it uploads the database. It lives in the target, beside the
// database's objects and outside Litestream's layout:
//
//	<name>-walsync/lease/<generation: 16 hex digits>
//
// Each object is a small JSON [leaseRecord] naming its holder and its
// expiry. The newest generation is the lease. Objects are only ever created
// (never overwritten, as the Storage contract wants), so taking or renewing
// the lease is creating generation n+1 after reading n: of two processes
// that read the same n, the create-only Put lets exactly one succeed. The
// previous generation is deleted after each create, and a graceful release
// deletes the last one, so the next process takes the lease at once.
// Generations start again at 1 after a release, so a holder that checks
// whether the newest generation is still its own also reads its record.
//
// A lease is renewed only on the upload path: an upload more than half a
// TTL after the last renewal renews it first. An idle database makes no
// request, so its lease lapses; its next upload first checks that the lease
// is still its own (one List) and stops replicating the database, with an
// ERROR, if another process took it over meanwhile. See docs/decisions.md.

// DefaultLeaseTTL is how long a lease lasts after its last renewal.
const DefaultLeaseTTL = 10 * time.Minute

// Lease errors.
var (
	// ErrLeased is returned by [Replicator.Add] when another process holds
	// the database's lease. The error is a [*LeaseError].
	ErrLeased = errors.New("database is replicated by another process")

	// ErrLeaseLost is returned by uploads of a database whose lease another
	// process took over; the database is no longer replicated. The error is
	// a [*LeaseError].
	ErrLeaseLost = errors.New("lease lost to another process")
)

// LeaseHolder identifies the process holding a lease. It holds no secret.
type LeaseHolder struct {
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`  // when the holder's Replicator was made
	Instance string    `json:"instance"` // random, one per Replicator

	// On Linux, what tells a process of this host gone from one still
	// running: the boot, the PID namespace and the process's start time in
	// clock ticks since boot.
	Boot      string `json:"boot,omitempty"`
	PIDNS     string `json:"pidns,omitempty"`
	ProcStart uint64 `json:"procstart,omitempty"`
}

// String describes the holder for messages.
func (h LeaseHolder) String() string {
	return fmt.Sprintf("host %s pid %d (started %s, instance %s)",
		h.Host, h.PID, h.Started.UTC().Format(time.RFC3339), h.Instance)
}

// leaseRecord is the content of one lease object.
type leaseRecord struct {
	LeaseHolder
	Expires time.Time `json:"expires"`
}

// LeaseError is the error of a database whose lease another process holds.
// It matches [ErrLeased], or [ErrLeaseLost] if this process held the lease
// before.
type LeaseError struct {
	Name    string
	Holder  LeaseHolder
	Expires time.Time
	Lost    bool
}

func (e *LeaseError) Error() string {
	if e.Lost {
		return fmt.Sprintf("lease of database %q lost to %s: stopped replicating it", e.Name, e.Holder)
	}
	return fmt.Sprintf("database %q is replicated into this target by %s; its lease expires at %s",
		e.Name, e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

func (e *LeaseError) Unwrap() error {
	if e.Lost {
		return ErrLeaseLost
	}
	return ErrLeased
}

// leasePrefix returns the key prefix of a database's lease objects.
func leasePrefix(name string) string { return name + "-walsync/lease/" }

// leaseKey returns the key of one generation of a database's lease.
func leaseKey(name string, gen uint64) string {
	return leasePrefix(name) + fmt.Sprintf("%016x", gen)
}

// fence holds the leases of one Replicator's databases.
type fence struct {
	store    Storage // the target itself, not the fenced view of it
	ttl      time.Duration
	takeover bool
	self     LeaseHolder
	log      *slog.Logger
	now      func() time.Time
	alive    func(LeaseHolder) bool // false: a process of this host that is gone
	onLost   func(name string)      // stops replicating the database

	mu     sync.Mutex
	leases map[string]*lease // +checklocks:mu
	lostWG sync.WaitGroup    // onLost calls in progress
}

// lease is this process's hold on one database's lease.
type lease struct {
	mu    sync.Mutex // held across the requests of a renewal
	gen   uint64     // +checklocks:mu
	start time.Time  // +checklocks:mu; when the request creating gen started
	lost  *LeaseError
}

func newFence(store Storage, ttl time.Duration, takeover bool, log *slog.Logger) *fence {
	f := &fence{
		store: store, ttl: ttl, takeover: takeover, log: log,
		self: selfHolder(), now: time.Now,
		leases: make(map[string]*lease),
	}
	f.alive = func(h LeaseHolder) bool {
		if h.Instance != f.self.Instance && sameProcess(h, f.self) {
			// Another Replicator of this process: alive only while it is
			// open (one closed without releasing, e.g. its release timed
			// out, must not lock this process out until the expiry).
			_, open := openFences.Load(h.Instance)
			return open
		}
		return processAlive(h)
	}
	openFences.Store(f.self.Instance, struct{}{})
	return f
}

// openFences holds the instance ids of the fences of this process whose
// Replicator is not closed: the process-wide fact that tells a lease left
// by an earlier Replicator of this process from one still in use.
var openFences sync.Map

// closeFence records that f's Replicator is closed.
func (f *fence) close() { openFences.Delete(f.self.Instance) }

// sameProcess reports whether a and b describe the same process.
func sameProcess(a, b LeaseHolder) bool {
	return a.Host == b.Host && a.PID == b.PID && a.Boot == b.Boot && a.PIDNS == b.PIDNS && a.ProcStart == b.ProcStart
}

// selfHolder describes this process.
func selfHolder() LeaseHolder {
	host, _ := os.Hostname()
	var id [8]byte
	rand.Read(id[:])
	h := LeaseHolder{Host: host, PID: os.Getpid(), Started: time.Now().UTC().Round(time.Millisecond), Instance: hex.EncodeToString(id[:])}
	h.Boot, h.PIDNS, h.ProcStart = procIdentity(h.PID)
	return h
}

// validFor is how long after its creation this process trusts a lease
// without looking: a tenth of the TTL short of its expiry, so that clocks a
// little apart never let two processes think they hold it.
func (f *fence) validFor() time.Duration { return f.ttl - f.ttl/10 }

// acquire takes the lease of name: it reads the newest generation and, if
// no other process holds it (or Options.Takeover), creates the next one. A
// lease held by a process of this host that is gone is taken at once.
func (f *fence) acquire(ctx context.Context, name string) error {
	for range 5 {
		gens, err := f.generations(ctx, name)
		if err != nil {
			return err
		}
		var gen uint64
		if len(gens) > 0 {
			gen = gens[len(gens)-1]
			rec, err := f.read(ctx, name, gen)
			if errors.Is(err, ErrNotExist) {
				continue // renewed or released meanwhile: look again
			}
			if err != nil {
				return err
			}
			if held := f.heldByOther(rec); held != nil {
				if !f.takeover {
					return held
				}
				f.log.Warn("taking over the lease of a database another process holds", "db", name, "holder", rec.LeaseHolder.String())
			}
		}
		start := f.now()
		err = f.create(ctx, name, gen+1, leaseRecord{LeaseHolder: f.self, Expires: start.Add(f.ttl)})
		if errors.Is(err, ErrExists) {
			continue // another process created it first: look again
		}
		if err != nil {
			return err
		}
		f.deleteGens(ctx, name, gens)
		f.mu.Lock()
		f.leases[name] = &lease{gen: gen + 1, start: start}
		f.mu.Unlock()
		return nil
	}
	return fmt.Errorf("lease of %q: contended, try again", name)
}

// acquireLate takes the lease of name for a database added while the
// target could not be reached. If another process holds it, the database
// is given up as when the lease is lost.
func (f *fence) acquireLate(ctx context.Context, name string) error {
	err := f.acquire(ctx, name)
	var le *LeaseError
	if errors.As(err, &le) {
		le.Name = name
		f.log.Error("another process holds this database's lease: not replicating it", "db", name, "holder", le.Holder.String())
		f.lostWG.Go(func() { f.onLost(name) })
	}
	return err
}

// heldByOther returns the error for a record that another live process
// holds, or nil if it is free.
func (f *fence) heldByOther(rec leaseRecord) *LeaseError {
	if rec.Instance == f.self.Instance || !f.now().Before(rec.Expires) {
		return nil
	}
	if !f.alive(rec.LeaseHolder) {
		f.log.Info("taking over the lease of a process that is gone", "holder", rec.LeaseHolder.String())
		return nil
	}
	return &LeaseError{Holder: rec.LeaseHolder, Expires: rec.Expires}
}

// check is called before every upload of name. It returns nil while this
// process holds the lease, renewing it when half its TTL has passed, and a
// [*LeaseError] once another process took it over.
func (f *fence) check(ctx context.Context, name string) error {
	f.mu.Lock()
	l := f.leases[name]
	f.mu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	age := f.now().Sub(l.start)
	if age < f.ttl/2 {
		return nil
	}
	lapsed := age >= f.validFor()
	if lapsed {
		// Idle or paused past the expiry: another process may have taken
		// the lease. Ours is the newest generation, or it is lost.
		gens, err := f.generations(ctx, name)
		if err != nil {
			return err
		}
		if len(gens) == 0 || gens[len(gens)-1] != l.gen {
			return f.lose(ctx, name, l, gens)
		}
		rec, err := f.read(ctx, name, l.gen)
		if errors.Is(err, ErrNotExist) {
			return f.lose(ctx, name, l, nil)
		}
		if err != nil {
			return err
		}
		if rec.Instance != f.self.Instance {
			return f.lose(ctx, name, l, gens)
		}
	}
	start := f.now()
	err := f.create(ctx, name, l.gen+1, leaseRecord{LeaseHolder: f.self, Expires: start.Add(f.ttl)})
	switch {
	case errors.Is(err, ErrExists):
		return f.lose(ctx, name, l, []uint64{l.gen + 1})
	case err != nil && lapsed:
		return err
	case err != nil:
		// Still ours for a while: upload, and renew at the next upload.
		f.log.Warn("renew lease", "db", name, "error", err)
		return nil
	}
	f.deleteGens(ctx, name, []uint64{l.gen})
	l.gen, l.start = l.gen+1, start
	return nil
}

// lose records that another process took over the lease of name, logs it
// and stops replicating the database. gens are the generations seen; the
// newest names the new holder. The caller holds l.mu.
func (f *fence) lose(ctx context.Context, name string, l *lease, gens []uint64) error {
	e := &LeaseError{Name: name, Lost: true}
	if len(gens) > 0 {
		if rec, err := f.read(ctx, name, gens[len(gens)-1]); err == nil {
			e.Holder, e.Expires = rec.LeaseHolder, rec.Expires
		}
	}
	l.lost = e
	f.log.Error("another process took over this database's lease: stopped replicating it", "db", name, "holder", e.Holder.String())
	f.lostWG.Go(func() { f.onLost(name) })
	return e
}

// release gives up the lease of name, if this process holds it: it deletes
// the lease, so that the next process takes it at once.
func (f *fence) release(ctx context.Context, name string) error {
	f.mu.Lock()
	l := f.leases[name]
	delete(f.leases, name)
	f.mu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return nil
	}
	if err := f.store.Delete(ctx, leaseKey(name, l.gen)); err != nil {
		return fmt.Errorf("release lease of %q: %w", name, err)
	}
	return nil
}

// releaseAll releases every lease this process holds, a few at a time.
func (f *fence) releaseAll(ctx context.Context, limit int) error {
	f.lostWG.Wait()
	f.mu.Lock()
	names := make([]string, 0, len(f.leases))
	for name := range f.leases {
		names = append(names, name)
	}
	f.mu.Unlock()
	var g errgroup.Group
	g.SetLimit(limit)
	errs := make([]error, len(names))
	for i, name := range names {
		g.Go(func() error { errs[i] = f.release(ctx, name); return nil })
	}
	g.Wait()
	return errors.Join(errs...)
}

// generations lists the lease generations of name in ascending order,
// ignoring keys that are not a generation.
func (f *fence) generations(ctx context.Context, name string) ([]uint64, error) {
	prefix := leasePrefix(name)
	var gens []uint64
	for obj, err := range f.store.List(ctx, prefix, "") {
		if err != nil {
			return nil, fmt.Errorf("lease of %q: %w", name, err)
		}
		s := strings.TrimPrefix(obj.Key, prefix)
		if len(s) != 16 {
			continue
		}
		if gen, err := strconv.ParseUint(s, 16, 64); err == nil && gen > 0 {
			gens = append(gens, gen)
		}
	}
	return gens, nil
}

// read returns the record of one generation.
func (f *fence) read(ctx context.Context, name string, gen uint64) (leaseRecord, error) {
	rc, err := f.store.Get(ctx, leaseKey(name, gen), 0, -1)
	if err != nil {
		return leaseRecord{}, fmt.Errorf("lease of %q: %w", name, err)
	}
	defer rc.Close()
	var rec leaseRecord
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		return leaseRecord{}, fmt.Errorf("lease of %q: read %s: %w", name, leaseKey(name, gen), err)
	}
	return rec, nil
}

// create stores one generation; it fails with ErrExists if another process
// created it first.
func (f *fence) create(ctx context.Context, name string, gen uint64, rec leaseRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := f.store.Put(ctx, leaseKey(name, gen), bytes.NewReader(b), int64(len(b)), nil); err != nil {
		return fmt.Errorf("lease of %q: %w", name, err)
	}
	return nil
}

// deleteGens removes superseded generations. It is best effort: a
// generation left behind is harmless, as only the newest counts.
func (f *fence) deleteGens(ctx context.Context, name string, gens []uint64) {
	if len(gens) == 0 {
		return
	}
	keys := make([]string, len(gens))
	for i, gen := range gens {
		keys[i] = leaseKey(name, gen)
	}
	if err := f.store.Delete(ctx, keys...); err != nil {
		f.log.Debug("delete superseded lease", "db", name, "error", err)
	}
}

// fencedStore is the Storage the engine writes through: a Put under a
// database's name goes through only while this process holds its lease.
type fencedStore struct {
	Storage
	f *fence
}

func (s fencedStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	// <name>/<level>/<file>: only LTX objects are fenced.
	if i := strings.LastIndexByte(key, '/'); i > 0 {
		if j := strings.LastIndexByte(key[:i], '/'); j > 0 {
			if err := s.f.check(ctx, key[:j]); err != nil {
				return err
			}
		}
	}
	return s.Storage.Put(ctx, key, r, size, meta)
}

// Unwrap returns the target.
func (s fencedStore) Unwrap() Storage { return s.Storage }
