//go:build !linux

package memtrim

// ReleaseCode does nothing outside Linux.
func ReleaseCode() (Stats, error) { return Stats{}, nil }
