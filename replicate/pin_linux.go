//go:build linux

package replicate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/walsync/walsync/internal/wal"

	"golang.org/x/sys/unix"
)

// Lock layout of SQLite's unix VFS (also used by the ncruces driver).
const (
	pendingByte = 0x40000000
	sharedFirst = pendingByte + 2
	sharedSize  = 510

	shmLockBase = 120 // byte offset of the first WAL-index lock in -shm
	shmDMS      = shmLockBase + 8
	shmReadMark = 100 // offset of aReadMark[0] in the WAL-index
	shmNReader  = 5   // read-mark slots 0..4
	shmMinSize  = 136 // two WAL-index headers plus the checkpoint info

	readMarkNotUsed = 0xffffffff
)

func shmReadLock(i int) int64 { return shmLockBase + 3 + int64(i) }

// errNoSharedMemory means the WAL-index (-shm) is missing or not in use by
// any connection, so it cannot be pinned without initialising it first.
var errNoSharedMemory = errors.New("wal-index not in use")

// pin holds the locks that stop SQLite from discarding WAL frames walsync
// has not yet replicated, without an SQLite connection:
//
//   - a read lock on the database's SHARED range, so the last connection to
//     close cannot take EXCLUSIVE and checkpoint-then-delete the WAL;
//   - a read lock on the -shm dead-man's switch, so the WAL-index stays live;
//   - a read lock on one read-mark slot (1..4) whose mark is "not used":
//     checkpoints still copy every frame into the database, but no writer or
//     checkpoint can restart or truncate the WAL while the slot is held.
//
// Each database held by the watcher costs these two descriptors.
type pin struct {
	db   *os.File
	shm  *os.File
	slot int  // held read-mark slot, 0 if none
	zero bool // READ_LOCK(0) held: no checkpoint can copy frames
}

// lockDB opens path and takes the SHARED-range read lock.
func (p *pin) lockDB(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if t, err := lockType(f, pendingByte, 1); err != nil {
		f.Close()
		return err
	} else if t == lockWrite {
		f.Close()
		return errLockBusy
	}
	if err := readLock(f, sharedFirst, sharedSize); err != nil {
		f.Close()
		return err
	}
	p.db = f
	return nil
}

// lockSHM opens the -shm of the database and joins it if some connection
// has it open (its dead-man's switch is read-locked). It returns
// errNoSharedMemory if the WAL-index is absent or stale.
func (p *pin) lockSHM(shmPath string) error {
	f, err := os.OpenFile(shmPath, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return errNoSharedMemory
	} else if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	t, err := lockType(f, shmDMS, 1)
	if err != nil {
		f.Close()
		return err
	}
	if t == lockUnlocked || fi.Size() < shmMinSize {
		f.Close()
		return errNoSharedMemory
	}
	if err := readLock(f, shmDMS, 1); err != nil {
		f.Close()
		return fmt.Errorf("lock %s: %w", shmPath, err)
	}
	p.shm = f
	return nil
}

// lockSlot takes a read-mark slot. It prefers a slot it can claim (write
// lock, set the mark to "not used", downgrade) so that checkpoints are not
// limited by the mark; failing that, it shares any slot.
func (p *pin) lockSlot() error {
	if p.slot != 0 {
		return nil
	}
	for i := shmNReader - 1; i >= 1; i-- {
		if err := writeLock(p.shm, shmReadLock(i), 1); err != nil {
			if errors.Is(err, errLockBusy) {
				continue
			}
			return err
		}
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], readMarkNotUsed)
		_, werr := p.shm.WriteAt(b[:], shmReadMark+4*int64(i))
		if err := readLock(p.shm, shmReadLock(i), 1); err != nil {
			unlock(p.shm, shmReadLock(i), 1)
			return err
		}
		if werr != nil {
			unlock(p.shm, shmReadLock(i), 1)
			return werr
		}
		p.slot = i
		return nil
	}
	for i := 1; i < shmNReader; i++ {
		if err := readLock(p.shm, shmReadLock(i), 1); err == nil {
			p.slot = i
			return nil
		} else if !errors.Is(err, errLockBusy) {
			return err
		}
	}
	return errLockBusy
}

// unlockSlot releases the read-mark slot.
func (p *pin) unlockSlot() error {
	if p.slot == 0 {
		return nil
	}
	err := unlock(p.shm, shmReadLock(p.slot), 1)
	p.slot = 0
	return err
}

// lockZero takes READ_LOCK(0) shared. While it is held no checkpoint can
// copy frames into the database file (a checkpointer holds it exclusively
// while it copies): the database file does not change underneath a
// snapshot, and a WAL generation whose frames are not all copied into the
// database cannot be restarted. A generation that is already fully copied
// can still be restarted by the next writer; walsync's own checkpoint relies
// on that (see checkpoint.go).
func (p *pin) lockZero() error {
	if p.zero {
		return nil
	}
	if err := readLock(p.shm, shmReadLock(0), 1); err != nil {
		return err
	}
	p.zero = true
	return nil
}

// unlockZero releases READ_LOCK(0).
func (p *pin) unlockZero() error {
	if !p.zero {
		return nil
	}
	p.zero = false
	return unlock(p.shm, shmReadLock(0), 1)
}

// lockWriter takes the WAL write lock (WAL_WRITE_LOCK), which excludes
// every SQLite writer: no frame can be appended and no writer can restart
// the WAL while it is held. It never waits.
func (p *pin) lockWriter() error { return writeLock(p.shm, shmLockBase, 1) }

// unlockWriter releases the WAL write lock.
func (p *pin) unlockWriter() error { return unlock(p.shm, shmLockBase, 1) }

// othersAttached reports whether a connection other than walsync has the
// WAL-index open (holds the dead-man's switch); false if walsync does not
// hold it either.
func (p *pin) othersAttached() bool {
	if p.shm == nil {
		return false
	}
	t, err := lockType(p.shm, shmDMS, 1)
	return err != nil || t != lockUnlocked
}

// uninitSHM marks both copies of the WAL-index header uninitialised: the
// next connection to read it rebuilds the index from the WAL (SQLite's
// recovery), as after a crash. The caller holds the WAL write lock.
func (p *pin) uninitSHM() error {
	const hdrSize, isInit = 48, 12
	var zero [1]byte
	for _, off := range []int64{isInit, hdrSize + isInit} {
		if _, err := p.shm.WriteAt(zero[:], off); err != nil {
			return err
		}
	}
	return nil
}

// closeSHM releases the WAL-index locks, keeping the database's.
func (p *pin) closeSHM() {
	if p.shm != nil {
		p.shm.Close()
	}
	p.shm, p.slot, p.zero = nil, 0, false
}

// close releases every lock by closing the descriptors.
func (p *pin) close() error {
	var errs []error
	if p.shm != nil {
		errs = append(errs, p.shm.Close())
	}
	if p.db != nil {
		errs = append(errs, p.db.Close())
	}
	*p = pin{}
	return errors.Join(errs...)
}

// shmState is what walsync reads from the WAL-index of a database.
type shmState struct {
	mxFrame      uint32 // last valid commit frame, as SQLite sees it
	nBackfill    uint32 // frames already copied into the database file
	salt1, salt2 uint32 // salts of the WAL generation
}

// state reads the WAL-index header and checkpoint counters. It returns
// false if the header is not initialised or is being rewritten (its two
// copies differ), as SQLite's own readers check.
func (p *pin) state() (shmState, bool) {
	if p.shm == nil {
		return shmState{}, false
	}
	var b [shmMinSize]byte
	if n, err := p.shm.ReadAt(b[:], 0); n < len(b) || err != nil {
		return shmState{}, false
	}
	const hdrSize = 48
	if !bytes.Equal(b[:hdrSize], b[hdrSize:2*hdrSize]) || b[12] == 0 { // isInit
		return shmState{}, false
	}
	ne := binary.NativeEndian
	return shmState{
		mxFrame:   ne.Uint32(b[16:]),
		nBackfill: ne.Uint32(b[96:]),
		// aSalt holds the WAL header's salt bytes as written (big-endian).
		salt1: binary.BigEndian.Uint32(b[32:]),
		salt2: binary.BigEndian.Uint32(b[36:]),
	}, true
}

// openDB opens the database without locking it, for databases whose WAL
// is protected by an in-process VFS gate instead of the pin.
func (p *pin) openDB(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	p.db = f
	return nil
}

// openSHM opens the -shm without locking it, if it exists, to read the
// WAL-index and take READ_LOCK(0) during snapshots. Without a lock of
// walsync's on it, SQLite's last connection deletes the -shm and the next
// one creates another: a descriptor of the deleted file is reopened, or
// READ_LOCK(0) would be taken on a file no connection uses.
func (p *pin) openSHM(shmPath string) {
	if p.shm != nil {
		cur, err := os.Stat(shmPath)
		old, ferr := p.shm.Stat()
		if err == nil && ferr == nil && inode(cur) == inode(old) {
			return
		}
		p.closeSHM()
	}
	if f, err := os.OpenFile(shmPath, os.O_RDWR, 0); err == nil {
		p.shm = f
	}
}

// fileStamp identifies a version of a file: its inode, size and change
// times. walsync records it when it stops pinning a database whose WAL
// holds nothing it needs; if the database changed before the pin is taken
// again, a checkpoint copied frames walsync never saw.
type fileStamp struct {
	Ino   int64 `json:"ino"`
	Size  int64 `json:"size"`
	Mtime int64 `json:"mtime"`
	Ctime int64 `json:"ctime"`
}

// stampOf returns the stamp of the file at path.
func stampOf(path string) (fileStamp, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileStamp{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return fileStamp{Ino: int64(st.Ino), Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, nil
}

// held reports whether the database's descriptors are open.
func (p *pin) held() bool { return p.db != nil }

// sameSalts reports whether the WAL-index describes pos's generation.
func sameSalts(pos wal.Pos, st shmState) bool { return pos.Salt1 == st.salt1 && pos.Salt2 == st.salt2 }
