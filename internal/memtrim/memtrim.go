// Package memtrim gives back the resident pages of code and read-only data
// that a long-running process no longer uses.
//
// A Go binary's package initialisers, flag parsing and start-up paths touch
// code and tables all over the executable (and the C library, in a cgo
// build), and the kernel maps 64 KiB around every page fault (fault-around).
// Those pages stay counted in the process's RSS for its whole life although
// they are clean copies of files that the kernel could drop at any time.
// ReleaseCode unmaps them from the process with madvise(MADV_DONTNEED); the
// pages stay in the page cache, and whatever the process runs next faults
// back in without I/O.
//
// Only private, non-writable, file-backed mappings holding no modified
// (anonymous) page are released: for any other mapping MADV_DONTNEED would
// throw away the process's own data, such as relocated RELRO pages of a
// shared library.
package memtrim

// Stats describes one ReleaseCode call.
type Stats struct {
	// Mappings is the number of mappings released.
	Mappings int
	// Resident is how much of them was resident before the call, in bytes.
	Resident uint64
}
