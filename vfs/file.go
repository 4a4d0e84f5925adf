package vfs

import (
	"github.com/ncruces/go-sqlite3/util/vfsutil"
	sqlite3vfs "github.com/ncruces/go-sqlite3/vfs"
)

// mainFile wraps a main database file. It signals commits to the
// replicator, learns the encryption key from PRAGMAs and whether page
// checksums are on from the database header, and forwards everything else.
type mainFile struct {
	sqlite3vfs.File
	v     *VFS
	path  string
	entry *dbEntry
}

// Close counts the handle closed (the replicator releases the database
// after the application's last one) and closes it.
func (f *mainFile) Close() error {
	f.v.close(f.path, f.entry)
	return f.File.Close()
}

// headerReserve is the offset of the reserved-bytes field in page 1.
const headerReserve = 20

func (f *mainFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if off == 0 && n > headerReserve {
		f.entry.codec.setReserve(p[headerReserve])
	}
	return n, err
}

func (f *mainFile) WriteAt(p []byte, off int64) (int, error) {
	if off == 0 && len(p) > headerReserve {
		f.entry.codec.setReserve(p[headerReserve])
	}
	return f.File.WriteAt(p, off)
}

// CommitPhaseTwo (SQLITE_FCNTL_COMMIT_PHASETWO) marks a transaction fully
// written: the replicator is told, and syncs within its interval.
func (f *mainFile) CommitPhaseTwo() error {
	err := vfsutil.WrapCommitPhaseTwo(f.File)
	if h := f.entry.hooks(); h != nil {
		h.Committed(f.entry.walEnd.Load())
	}
	return err
}

// Pragma learns key, hexkey and textkey (for an encrypting base VFS) and
// passes every pragma on.
func (f *mainFile) Pragma(name, value string) (string, error) {
	switch name {
	case "key", "hexkey", "textkey":
		if err := f.entry.codec.setKey(map[string][]string{name: {value}}); err != nil {
			return "", err
		}
	}
	return vfsutil.WrapPragma(f.File, name, value)
}

func (f *mainFile) Unwrap() sqlite3vfs.File               { return f.File }
func (f *mainFile) SharedMemory() sqlite3vfs.SharedMemory { return vfsutil.WrapSharedMemory(f.File) }
func (f *mainFile) MemoryMapper() sqlite3vfs.MemoryMapper { return vfsutil.WrapMemoryMapper(f.File) }
func (f *mainFile) LockState() sqlite3vfs.LockLevel       { return vfsutil.WrapLockState(f.File) }
func (f *mainFile) PersistWAL() bool                      { return vfsutil.WrapPersistWAL(f.File) }
func (f *mainFile) SetPersistWAL(keep bool)               { vfsutil.WrapSetPersistWAL(f.File, keep) }
func (f *mainFile) PowersafeOverwrite() bool              { return vfsutil.WrapPowersafeOverwrite(f.File) }
func (f *mainFile) SetPowersafeOverwrite(psow bool)       { vfsutil.WrapSetPowersafeOverwrite(f.File, psow) }
func (f *mainFile) ChunkSize(size int)                    { vfsutil.WrapChunkSize(f.File, size) }
func (f *mainFile) SizeHint(size int64) error             { return vfsutil.WrapSizeHint(f.File, size) }
func (f *mainFile) HasMoved() (bool, error)               { return vfsutil.WrapHasMoved(f.File) }
func (f *mainFile) Overwrite() error                      { return vfsutil.WrapOverwrite(f.File) }
func (f *mainFile) SyncSuper(super string) error          { return vfsutil.WrapSyncSuper(f.File, super) }
func (f *mainFile) BeginAtomicWrite() error               { return vfsutil.WrapBeginAtomicWrite(f.File) }
func (f *mainFile) CommitAtomicWrite() error              { return vfsutil.WrapCommitAtomicWrite(f.File) }
func (f *mainFile) RollbackAtomicWrite() error            { return vfsutil.WrapRollbackAtomicWrite(f.File) }
func (f *mainFile) CheckpointStart()                      { vfsutil.WrapCheckpointStart(f.File) }
func (f *mainFile) CheckpointDone()                       { vfsutil.WrapCheckpointDone(f.File) }
func (f *mainFile) BusyHandler(handler func() bool)       { vfsutil.WrapBusyHandler(f.File, handler) }

// walFile wraps a WAL file. Before SQLite writes a new WAL header (the
// start of a generation, after a checkpoint let it restart the WAL) or
// truncates the WAL to zero, the replicator spools every committed frame of
// the outgoing generation that is not uploaded yet.
type walFile struct {
	sqlite3vfs.File
	entry *dbEntry
}

// walHeaderSize is the size of the WAL header SQLite writes in one call.
const walHeaderSize = 32

func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	if off == 0 && len(p) == walHeaderSize {
		if h := f.entry.hooks(); h != nil {
			h.BeforeWALReset(p)
		}
		f.entry.walEnd.Store(0)
	}
	n, err := f.File.WriteAt(p, off)
	if end := off + int64(n); end > f.entry.walEnd.Load() {
		f.entry.walEnd.Store(end) // SQLite's WAL write lock orders writers
	}
	return n, err
}

func (f *walFile) Truncate(size int64) error {
	if size == 0 {
		if h := f.entry.hooks(); h != nil {
			h.BeforeWALReset(nil)
		}
		f.entry.walEnd.Store(0)
	}
	return f.File.Truncate(size)
}

func (f *walFile) Unwrap() sqlite3vfs.File            { return f.File }
func (f *walFile) SizeHint(size int64) error          { return vfsutil.WrapSizeHint(f.File, size) }
func (f *walFile) ChunkSize(size int)                 { vfsutil.WrapChunkSize(f.File, size) }
func (f *walFile) LockState() sqlite3vfs.LockLevel    { return vfsutil.WrapLockState(f.File) }
func (f *walFile) HasMoved() (bool, error)            { return vfsutil.WrapHasMoved(f.File) }
func (f *walFile) Pragma(n, v string) (string, error) { return vfsutil.WrapPragma(f.File, n, v) }
