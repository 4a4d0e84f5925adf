package replicate

import "fmt"

// The replication state machine of one database. Every decision that
// affects correctness (does the chain of segments continue? may SQLite
// restart the WAL? must a snapshot be taken?) is a transition of this
// machine, taken under DB.mu by DB.apply. The table below is the whole
// machine: every state has an outcome for every event (a test checks it),
// and docs/design.md shows the same table.
//
// What each state guarantees, and the locks that back it on the watch path
// (in-app databases hold no locks: the VFS calls the engine before SQLite
// resets, truncates or deletes the WAL):
//
//   - New: added; the target not read yet. The WAL is pinned (a read-mark
//     slot), so nothing can be lost before the first sync reads the target.
//   - Following: pos is the end of what is captured of the WAL generation
//     pos names; the generation cannot be restarted behind walsync (a
//     read-mark slot; released only by the pin budget, in which case a
//     restart is noticed and answered with a snapshot).
//   - HandedOver: every committed frame of the generation at pos is
//     captured and copied into the database file; walsync holds
//     READ_LOCK(0), so SQLite may restart that generation and only it.
//   - Closed: no generation is open. The one at pos ended (SQLite deleted
//     or truncated the WAL, or walsync checkpointed and truncated it after
//     the application's last connection closed) with everything captured.
//     The next generation continues the chain: on the watch path because a
//     read-mark slot was held since (no generation can be restarted before
//     walsync reads it), or else if the database file is unchanged since
//     (stamp); in-app, if it is the one the VFS saw SQLite announce.
//   - Broken: the chain cannot be proven to continue; the next sync takes a
//     snapshot, logged at WARN with the reason.
//   - Gone: the database file was deleted; it is replicated again, from a
//     snapshot, when a database appears at its path.
type state uint8

const (
	stateNew state = iota
	stateFollowing
	stateHandedOver
	stateClosed
	stateBroken
	stateGone
	numStates
)

var stateNames = [numStates]string{"new", "following", "handed-over", "closed", "broken", "gone"}

func (s state) String() string { return stateNames[s] }

// event is what a sync observed, or what the VFS or the watcher reported.
type event uint8

const (
	// evResumed: the target was read and the WAL holds the position it
	// records.
	evResumed event = iota
	// evResumedClosed: the target was read; the WAL no longer holds the
	// position it records, but the record left when walsync closed that
	// generation proves nothing was written since.
	evResumedClosed
	// evUnproven: the target was read and nothing proves the WAL or the
	// database file continue from what it holds (no backup yet, or they
	// changed while walsync was not running).
	evUnproven
	// evCommits: the WAL holds the generation at pos (with or without new
	// commits after it).
	evCommits
	// evNewGen: the WAL holds another generation than the one at pos.
	evNewGen
	// evNoWAL: there is no WAL, or it is empty.
	evNoWAL
	// evTorn: the WAL header does not validate: being written, or
	// rewritten by something that is not SQLite.
	evTorn
	// evShort: the WAL is shorter than pos.
	evShort
	// evBackfilled: the generation holds CheckpointFrames or more, all
	// captured, all copied into the database, and no writer is active.
	evBackfilled
	// evChainShort: the WAL-index has committed frames that the checksum
	// chain does not reach (a torn or stale frame): they cannot be read.
	evChainShort
	// evAppClosed: no connection has the database open and everything is
	// captured.
	evAppClosed
	// evReset: in-app, SQLite is about to reset, truncate or delete the
	// WAL; everything committed was captured and spooled first.
	evReset
	// evDBChanged: the database file differs from the stamp taken when
	// the WAL closed: something wrote it outside a replicated WAL
	// (rollback journal mode, a checkpoint walsync never saw, a copy).
	evDBChanged
	// evReplaced: the path names another file than the one replicated.
	evReplaced
	// evDeleted: the path names no file.
	evDeleted
	// evCreated: a database file is at the path again.
	evCreated
	// evSnapshot: a snapshot was taken of the database file and the
	// committed frames of the WAL generation now at pos.
	evSnapshot
	// evSnapshotBackfilled: a snapshot was taken of the database file
	// alone, every frame of the WAL being copied into it; walsync holds
	// READ_LOCK(0).
	evSnapshotBackfilled
	// evSnapshotNoWAL: a snapshot was taken of a database without a WAL.
	evSnapshotNoWAL
	// evSnapshotFailed: a snapshot could not be taken; it is tried again.
	evSnapshotFailed
	// evUnpin: the pin budget released the database's descriptors.
	evUnpin
	// evConflict: another writer stored this database's next TXID.
	evConflict
	// evEmptied: the application stopped with nothing committed in the
	// WAL's generation (a transaction that spilled into a fresh WAL and
	// rolled back): walsync emptied the WAL, as SQLite's last close would
	// have deleted it.
	evEmptied
	numEvents
)

var eventNames = [numEvents]string{"resumed", "resumed-closed", "unproven", "commits", "new-generation", "no-wal", "torn-header", "short-wal",
	"backfilled", "chain-short", "app-closed", "reset", "db-changed", "replaced", "deleted", "created",
	"snapshot", "snapshot-backfilled", "snapshot-no-wal", "snapshot-failed", "unpin", "conflict", "emptied"}

func (e event) String() string { return eventNames[e] }

// action is what the engine does on a transition.
type action uint8

const (
	actNone     action = iota
	actCapture         // capture the commits after pos
	actAdopt           // the new generation continues the chain: pos = its start
	actRetake          // end the hand-over: take a read-mark slot back, release READ_LOCK(0)
	actRetry           // look again at the next sync
	actHandOver        // let SQLite restart the generation (READ_LOCK(0), slot released)
	actClose           // checkpoint and truncate the WAL, take the slot back
	actSpool           // in-app: the reset's segments are spooled; record the closed generation
	actRelease         // release every descriptor
	actReopen          // open the file now at the path
	actRead            // re-read the target
)

var actionNames = map[action]string{actNone: "", actCapture: "capture", actAdopt: "adopt", actRetake: "retake slot",
	actRetry: "look again", actHandOver: "hand over", actClose: "truncate WAL", actSpool: "spool", actRelease: "release",
	actReopen: "reopen", actRead: "read target"}

// step is one cell of the table: the next state, what to do, and for a
// transition to Broken the reason logged and recorded.
type step struct {
	next   state
	act    action
	reason string
	set    bool
}

func to(next state, act action) step { return step{next: next, act: act, set: true} }

func broken(reason string) step {
	return step{next: stateBroken, act: actNone, reason: reason, set: true}
}

// Reasons for a discontinuity, as logged and as the snapshot's reason.
const (
	whyRestarted = "WAL restarted by another process"
	whyRewritten = "WAL deleted, truncated or rewritten by another process"
	whyShort     = "WAL truncated below the replicated position"
	whyChain     = "WAL-index holds frames the checksum chain does not reach"
	whyChanged   = "database file written outside a replicated WAL"
	whyReplaced  = "database file replaced"
	whyCreated   = "database file created again"
	whyConflict  = "another writer uses this database's name in the target"
	whyFirst     = "first snapshot"
)

// machine is the transition table, machine[state][event].
var machine = func() (m [numStates][numEvents]step) {
	// Unless set below, an event changes nothing.
	for st := range numStates {
		for ev := range numEvents {
			m[st][ev] = to(st, actNone)
		}
	}

	// New: the first sync reads the target.
	m[stateNew][evResumed] = to(stateFollowing, actNone)
	m[stateNew][evResumedClosed] = to(stateClosed, actNone)

	// Events that every live state answers alike.
	for _, st := range []state{stateNew, stateFollowing, stateHandedOver, stateClosed, stateBroken} {
		m[st][evUnproven] = broken("")
		m[st][evReplaced] = step{next: stateBroken, act: actReopen, reason: whyReplaced, set: true}
		m[st][evDeleted] = to(stateGone, actRelease)
		m[st][evConflict] = to(stateNew, actRead)
		if st != stateNew {
			m[st][evSnapshot] = to(stateFollowing, actNone)
			m[st][evSnapshotBackfilled] = to(stateHandedOver, actNone)
			m[st][evSnapshotNoWAL] = to(stateClosed, actNone)
			m[st][evSnapshotFailed] = broken("snapshot failed")
		}
	}
	m[stateBroken][evUnproven] = to(stateBroken, actNone)
	m[stateBroken][evSnapshotFailed] = to(stateBroken, actNone)

	m[stateFollowing][evCommits] = to(stateFollowing, actCapture)
	m[stateFollowing][evNewGen] = broken(whyRestarted)
	m[stateFollowing][evNoWAL] = broken(whyRewritten)
	m[stateFollowing][evTorn] = to(stateFollowing, actRetry)
	m[stateFollowing][evShort] = broken(whyShort)
	m[stateFollowing][evBackfilled] = to(stateHandedOver, actHandOver)
	m[stateFollowing][evChainShort] = broken(whyChain)
	m[stateFollowing][evAppClosed] = to(stateHandedOver, actHandOver) // whatever its length
	m[stateFollowing][evReset] = to(stateClosed, actSpool)
	m[stateFollowing][evUnpin] = to(stateFollowing, actRelease)
	m[stateFollowing][evEmptied] = to(stateClosed, actNone) // nothing of it was committed

	// HandedOver: the generation may be restarted (a new one continues the
	// chain) or may go on (a reader that began before the checkpoint
	// writes to it): then the hand-over ends and the slot is taken back.
	// Emptied by a TRUNCATE checkpoint, it lost nothing.
	m[stateHandedOver][evCommits] = to(stateFollowing, actRetake)
	m[stateHandedOver][evNewGen] = to(stateFollowing, actAdopt)
	m[stateHandedOver][evTorn] = to(stateHandedOver, actRetry)
	m[stateHandedOver][evChainShort] = broken(whyChain)
	m[stateHandedOver][evAppClosed] = to(stateClosed, actClose)
	m[stateHandedOver][evReset] = to(stateClosed, actSpool)
	m[stateHandedOver][evUnpin] = to(stateClosed, actRelease)

	// Closed: a new generation continues the chain (over an unchanged
	// database file: evDBChanged is checked first). The closed generation
	// seen again is a reset not landed yet: the VFS gate runs just before
	// SQLite writes the new header.
	m[stateClosed][evCommits] = to(stateClosed, actRetry)
	m[stateClosed][evNewGen] = to(stateFollowing, actAdopt)
	m[stateClosed][evTorn] = to(stateClosed, actRetry)
	m[stateClosed][evReset] = to(stateClosed, actSpool)
	m[stateClosed][evDBChanged] = broken(whyChanged)
	m[stateClosed][evUnpin] = to(stateClosed, actRelease)

	// Broken: whatever is observed, the snapshot comes first.
	m[stateBroken][evUnpin] = to(stateBroken, actRelease)

	// Gone: only a file at the path again leaves it.
	m[stateGone][evCreated] = step{next: stateBroken, act: actReopen, reason: whyCreated, set: true}
	return m
}()

// transition returns the cell of the table for st and ev.
func transition(st state, ev event) step {
	s := machine[st][ev]
	if !s.set {
		panic(fmt.Sprintf("replicate: no transition from %s on %s", st, ev))
	}
	return s
}
