package dirstore

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"path/filepath"
	"slices"
	"strings"

	"github.com/walsync/walsync/replicate"
)

// List yields the objects whose keys start with prefix and sort after
// startAfter, in ascending byte order of their keys, like S3. Metadata is not
// filled in.
//
// It walks the tree one directory at a time, holding in memory only the
// sorted entries of the directories on the current path, and does not descend into
// directories that cannot hold a matching key. Temporary files, the
// metadata directory and names that are not valid keys are skipped.
func (s *Store) List(ctx context.Context, prefix, startAfter string) iter.Seq2[replicate.ObjectInfo, error] {
	return func(yield func(replicate.ObjectInfo, error) bool) {
		w := walker{s: s, ctx: ctx, prefix: prefix, startAfter: startAfter, yield: yield}
		w.walk("")
	}
}

// walker is the state of one List call.
type walker struct {
	s                  *Store
	ctx                context.Context
	prefix, startAfter string
	yield              func(replicate.ObjectInfo, error) bool
}

// entry is a directory entry that may hold or be a key.
type entry struct {
	sort  string // the name, plus "/" for a directory: keys sort by this
	isDir bool
}

// walk yields the matching keys below dir, a key prefix that is "" or ends
// in "/". It reports false once the caller stopped or an error was yielded.
func (w *walker) walk(dir string) bool {
	entries, err := w.readDir(dir)
	if err != nil {
		w.yield(replicate.ObjectInfo{}, fmt.Errorf("dirstore: list %s: %w", w.prefix, err))
		return false
	}
	for _, e := range entries {
		key := dir + e.sort
		if e.isDir {
			// Every key below key has key as a proper prefix.
			if !strings.HasPrefix(key, w.prefix) && !strings.HasPrefix(w.prefix, key) {
				continue
			}
			if w.startAfter > key && !strings.HasPrefix(w.startAfter, key) {
				continue // all of them sort before startAfter
			}
			if !w.walk(key) {
				return false
			}
			continue
		}
		if !strings.HasPrefix(key, w.prefix) || key <= w.startAfter {
			continue
		}
		if err := w.ctx.Err(); err != nil {
			w.yield(replicate.ObjectInfo{}, fmt.Errorf("dirstore: list %s: %w", w.prefix, err))
			return false
		}
		fi, err := w.s.root.Lstat(filepath.FromSlash(key))
		if notExist(err) {
			continue // deleted since readDir
		}
		if err != nil {
			w.yield(replicate.ObjectInfo{}, fmt.Errorf("dirstore: list %s: %w", w.prefix, err))
			return false
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if !w.yield(replicate.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil) {
			return false
		}
	}
	return true
}

// readDir returns the entries of dir that can be or hold keys, sorted so that
// walking them yields keys in ascending order. A directory removed since its
// parent was read has no entries.
func (w *walker) readDir(dir string) ([]entry, error) {
	if err := w.ctx.Err(); err != nil {
		return nil, err
	}
	name := "."
	if dir != "" {
		name = filepath.FromSlash(strings.TrimSuffix(dir, "/"))
	}
	f, err := w.s.root.Open(name)
	if notExist(err) && dir != "" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		if !validName(de.Name()) {
			continue
		}
		switch t := de.Type(); {
		case t.IsDir():
			entries = append(entries, entry{sort: de.Name() + "/", isDir: true})
		case t.IsRegular():
			entries = append(entries, entry{sort: de.Name()})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.sort, b.sort) })
	return entries, nil
}
