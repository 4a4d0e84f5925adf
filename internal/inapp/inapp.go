// Package inapp connects walsync's in-process VFS (package vfs) to its
// engine (package replicate) without making the calls part of either
// package's public API: only packages of this module can name [Token], so
// only they can obtain a database's [Hooks].
package inapp

// Hooks are the calls the VFS makes into the engine for one database, on
// the goroutine of the SQLite call that causes them, while SQLite holds the
// locks that call needs. None of them does network I/O or fails the
// caller: a problem becomes a snapshot at the next sync.
type Hooks interface {
	// Committed reports a transaction committed (SQLite's commit phase
	// two). walEnd is the end of the last frame written to the WAL, 0 if
	// unknown.
	Committed(walEnd int64)

	// BeforeWALReset is called before SQLite resets the WAL (next is the
	// header it is about to write), truncates it or deletes it (next is
	// nil). Every committed frame not yet uploaded is spooled durably
	// first.
	BeforeWALReset(next []byte)

	// Opened reports a main-database handle opened through the VFS. It
	// returns false if the engine released the database meanwhile: the VFS
	// must add it again.
	Opened() bool

	// Closed reports a main-database handle closed. When the last one
	// closes, the engine uploads what is captured and releases the
	// database (its descriptors and its entry).
	Closed()
}

// Token is a value only this module can make: the engine's in-app entry
// point takes one, so that users cannot call it.
type Token struct{ _ struct{} }
