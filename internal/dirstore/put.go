package dirstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/walsync/walsync/replicate"
)

// Put stores size bytes read from the start of r under key, with meta and
// the content's SHA-256 (under [replicate.MetaSHA256], replacing any value
// the caller passed) in the key's sidecar.
//
// The content goes to a temporary file in the key's directory, which is
// synced and then hard-linked to the final name, so a reader never sees a
// partial object and an existing object is never replaced: if key holds
// different content, Put returns an error matching [replicate.ErrExists];
// if it holds the same content, Put returns nil.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := s.put(ctx, key, r, size, meta); err != nil {
		return fmt.Errorf("dirstore: put %s: %w", key, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if err := checkMeta(meta); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind content: %w", err)
	}

	name, sidecar := paths(key)
	data, dataTmp, metaTmp, err := s.createTemps(filepath.Dir(name), filepath.Dir(sidecar))
	if err != nil {
		return err
	}
	defer func() {
		// Best effort: after a successful commit both names are gone
		// already; leftovers are harmless and never listed.
		data.Close()
		s.root.Remove(dataTmp)
		s.root.Remove(metaTmp)
	}()

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(data, h), io.LimitReader(ctxReader{ctx, r}, size))
	if err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	if n < size {
		return fmt.Errorf("read %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err := data.Sync(); err != nil {
		return fmt.Errorf("sync content: %w", err)
	}
	if err := data.Close(); err != nil {
		return fmt.Errorf("close content: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))

	m := maps.Clone(meta)
	if m == nil {
		m = make(map[string]string, 1)
	}
	m[replicate.MetaSHA256] = sum
	if err := s.writeSidecar(metaTmp, m); err != nil {
		return err
	}

	exists, err := s.commit(name, sidecar, dataTmp, metaTmp)
	if err != nil {
		return err
	}
	if exists {
		return s.sameContent(ctx, name, sidecar, sum, size)
	}
	// Drop the temporary name before the directory is synced; should that
	// fail, the deferred call tries again.
	s.root.Remove(dataTmp)
	if err := s.syncDir(filepath.Dir(sidecar)); err != nil {
		return err
	}
	return s.syncDir(filepath.Dir(name))
}

// createTemps creates the directories of a key and an empty temporary file
// in each, under s.mu so that a concurrent Delete cannot prune the
// directories in between. It returns the open data file and both names.
func (s *Store) createTemps(dataDir, metaDir string) (data *os.File, dataTmp, metaTmp string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dir := range []string{dataDir, metaDir} {
		if err := s.root.MkdirAll(dir, 0o700); err != nil {
			return nil, "", "", fmt.Errorf("create directory: %w", err)
		}
	}
	data, dataTmp, err = s.createTemp(dataDir)
	if err != nil {
		return nil, "", "", err
	}
	meta, metaTmp, err := s.createTemp(metaDir)
	if err == nil {
		err = meta.Close()
	}
	if err != nil {
		data.Close()
		s.root.Remove(dataTmp)
		s.root.Remove(metaTmp)
		return nil, "", "", fmt.Errorf("create temporary file: %w", err)
	}
	return data, dataTmp, metaTmp, nil
}

// createTemp creates a new, empty file with a random name in dir (mode 0600)
// and returns it with its name relative to the root.
func (s *Store) createTemp(dir string) (*os.File, string, error) {
	var b [8]byte
	for range 10 {
		rand.Read(b[:])
		name := filepath.Join(dir, tmpPrefix+hex.EncodeToString(b[:]))
		f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return f, name, nil
	}
	return nil, "", fmt.Errorf("%s: too many name collisions", dir)
}

// writeSidecar writes m as JSON to the existing file name and syncs it.
func (s *Store) writeSidecar(name string, m map[string]string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync metadata: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

// commit publishes a Put: the sidecar first, then the data file, so that a
// data file always has its sidecar. It reports exists (and changes nothing)
// if name is already taken.
func (s *Store) commit(name, sidecar, dataTmp, metaTmp string) (exists bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.root.Lstat(name); err == nil {
		return true, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := s.root.Rename(metaTmp, sidecar); err != nil {
		return false, fmt.Errorf("publish metadata: %w", err)
	}
	// link(2) never replaces an existing name, so even a writer in another
	// process cannot make us overwrite an object.
	if err := s.root.Link(dataTmp, name); errors.Is(err, fs.ErrExist) {
		return true, nil
	} else if err != nil {
		s.root.Remove(sidecar)
		return false, fmt.Errorf("publish content: %w", err)
	}
	return false, nil
}

// sameContent decides a Put onto an existing name: nil if the stored object
// has the given SHA-256 and size, else an error matching
// [replicate.ErrExists].
func (s *Store) sameContent(ctx context.Context, name, sidecar, sum string, size int64) error {
	s.mu.RLock()
	fi, err := s.stat(name)
	var m map[string]string
	if err == nil {
		m, err = s.readSidecar(sidecar)
	}
	s.mu.RUnlock()
	if errors.Is(err, replicate.ErrNotExist) {
		return fmt.Errorf("%w: a directory has this name", replicate.ErrExists)
	}
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("%w: stored size %d, new size %d", replicate.ErrExists, fi.Size(), size)
	}
	stored := m[replicate.MetaSHA256]
	if stored == "" {
		// No sidecar (a file put there by hand): hash the content.
		if stored, err = s.hashFile(ctx, name); err != nil {
			return err
		}
	}
	if stored != sum {
		return fmt.Errorf("%w: stored sha256 %s, new sha256 %s", replicate.ErrExists, stored, sum)
	}
	return nil
}

// hashFile returns the hex SHA-256 of the file name.
func (s *Store) hashFile(ctx context.Context, name string) (string, error) {
	f, err := s.root.Open(name)
	if err != nil {
		return "", fmt.Errorf("hash stored content: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("hash stored content: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readSidecar returns the metadata stored for a data file; an object without
// a sidecar has none.
func (s *Store) readSidecar(sidecar string) (map[string]string, error) {
	b, err := s.root.ReadFile(sidecar)
	if notExist(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode metadata %s: %w", sidecar, err)
	}
	return m, nil
}

// syncDir makes the entries of dir durable.
func (s *Store) syncDir(dir string) error {
	f, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
