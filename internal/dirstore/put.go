package dirstore

import (
	"context"
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
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/replicate"
)

// Put stores size bytes read from the start of r under key, with meta and
// the content's SHA-256 (under [replicate.MetaSHA256], replacing any value
// the caller passed) in the file's "user.walsync" attribute.
//
// The content and attribute go to an unnamed file (O_TMPFILE) in the key's
// directory, which is synced and then linked to the final name, so a reader never
// sees a partial object and an existing object is never replaced: if key
// holds different content, Put returns an error matching
// [replicate.ErrExists]; if it holds the same content, Put returns nil.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := s.put(ctx, key, r, size, meta); err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			// Retrying will not help until someone changes the directory.
			return fmt.Errorf("dirstore: put %s: %w (%w)", key, err, replicate.ErrRefused)
		}
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

	name := path(key)
	dir := filepath.Dir(name)
	dirf, err := s.openDir(dir)
	if err != nil {
		return err
	}
	defer dirf.Close()
	data, err := openTmpfile(dirf)
	if err != nil {
		return err
	}
	defer data.Close()

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(data, h), io.LimitReader(ctxReader{ctx, r}, size))
	if err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	if n < size {
		return fmt.Errorf("read %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	m := maps.Clone(meta)
	if m == nil {
		m = make(map[string]string, 1)
	}
	m[replicate.MetaSHA256] = sum
	if err := setMeta(data, m); err != nil {
		return err
	}
	if err := data.Sync(); err != nil {
		return fmt.Errorf("sync content: %w", err)
	}

	// linkat(2) never replaces an existing name, so even a writer in
	// another process cannot make us overwrite an object.
	if err := linkTmpfile(data, dirf, filepath.Base(name)); errors.Is(err, fs.ErrExist) {
		return s.sameContent(ctx, name, sum, size)
	} else if err != nil {
		return fmt.Errorf("publish content: %w", err)
	}
	if err := dirf.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// openDir opens the directory of a key, creating it if needed (under s.mu,
// so a concurrent Delete cannot prune it in between).
func (s *Store) openDir(dir string) (*os.File, error) {
	f, err := s.root.Open(dir)
	if err == nil || !notExist(err) {
		return f, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.root.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	return s.root.Open(dir)
}

// openTmpfile creates an unnamed file (O_TMPFILE, mode 0600) in dir: it has
// no name until linkTmpfile publishes it, so a crash leaves nothing behind.
func openTmpfile(dir *os.File) (*os.File, error) {
	rc, err := dir.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var serr error
	if err := rc.Control(func(dfd uintptr) {
		fd, serr = unix.Openat(int(dfd), ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("create file in %s: %w", dir.Name(), serr)
	}
	return os.NewFile(uintptr(fd), dir.Name()+"/(new object)"), nil
}

// linkTmpfile gives the unnamed file f the name base in dir; it fails with
// an error matching fs.ErrExist if the name is taken.
func linkTmpfile(f, dir *os.File, base string) error {
	src := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	rc, err := dir.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(dfd uintptr) {
		serr = unix.Linkat(unix.AT_FDCWD, src, int(dfd), base, unix.AT_SYMLINK_FOLLOW)
	}); err != nil {
		return err
	}
	if errors.Is(serr, unix.EEXIST) {
		return fs.ErrExist
	}
	return serr
}

// setMeta stores m as JSON in the metaAttr attribute of f.
func setMeta(f *os.File, m map[string]string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fsetxattr(int(fd), metaAttr, b, 0) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("write metadata: %w", serr)
	}
	return nil
}

// getMeta returns the metadata stored on f; a file without the attribute
// (put there by hand) has none.
func getMeta(f *os.File) (map[string]string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 512)
	var n int
	var serr error
	read := func() {
		if err := rc.Control(func(fd uintptr) { n, serr = unix.Fgetxattr(int(fd), metaAttr, buf) }); err != nil {
			serr = err
		}
	}
	read()
	if errors.Is(serr, syscall.ERANGE) {
		buf = make([]byte, 64<<10)
		read()
	}
	if errors.Is(serr, syscall.ENODATA) {
		return map[string]string{}, nil
	}
	if serr != nil {
		return nil, fmt.Errorf("read metadata: %w", serr)
	}
	m := map[string]string{}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return nil, fmt.Errorf("decode metadata of %s: %w", f.Name(), err)
	}
	return m, nil
}

// sameContent decides a Put onto an existing name: nil if the stored object
// has the given SHA-256 and size, else an error matching
// [replicate.ErrExists].
func (s *Store) sameContent(ctx context.Context, name, sum string, size int64) error {
	f, err := s.root.Open(name)
	if notExist(err) {
		return fmt.Errorf("%w: the name is taken", replicate.ErrExists)
	} else if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: a directory has this name", replicate.ErrExists)
	}
	if fi.Size() != size {
		return fmt.Errorf("%w: stored size %d, new size %d", replicate.ErrExists, fi.Size(), size)
	}
	m, err := getMeta(f)
	if err != nil {
		return err
	}
	stored := m[replicate.MetaSHA256]
	if stored == "" {
		// No metadata (a file put there by hand): hash the content.
		h := sha256.New()
		if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
			return fmt.Errorf("hash stored content: %w", err)
		}
		stored = hex.EncodeToString(h.Sum(nil))
	}
	if stored != sum {
		return fmt.Errorf("%w: stored sha256 %s, new sha256 %s", replicate.ErrExists, stored, sum)
	}
	return nil
}

// syncDir makes the entries of dir durable.
func (s *Store) syncDir(dir string) error {
	f, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}
