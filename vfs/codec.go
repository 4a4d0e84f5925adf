package vfs

import (
	"crypto/aes"
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ncruces/go-sqlite3"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/xts"
	"lukechampine.com/adiantum"
	"lukechampine.com/adiantum/hbsh"
)

// codec implements replicate.PageCodec for the stack below the walsync VFS:
// it decrypts files as the encrypting VFS does, and encodes pages as the
// database file stores them (recomputing page checksums, then encrypting).
type codec struct {
	enc     Encryption
	reserve atomic.Int32 // reserved bytes per page, from the database header

	mu    sync.Mutex // guards the ciphers (they keep scratch state)
	adi   *hbsh.HBSH
	xts   *xts.Cipher
	block []byte
}

func newCodec(enc Encryption) *codec { return &codec{enc: enc} }

// active reports whether pages need any transformation to be stored: an
// encryption or page checksums. Checksums can be switched on later (they
// need a VACUUM), so an unencrypted database always gets the codec; it
// costs a header check per page.
func (c *codec) active() bool { return true }

func (c *codec) setReserve(r byte) { c.reserve.Store(int32(r)) }

// Block sizes of the encrypting VFSes: the unit of encryption and the
// tweak is the block's file offset (Adiantum) or sector number (XTS).
const (
	adiantumBlock = 4096
	xtsSector     = 512
)

// pepper strings of ncruces' default key derivations (their package
// defaults; a binary built with another pepper is not supported).
const (
	adiantumPepper = "github.com/ncruces/go-sqlite3/vfs/adiantum"
	xtsPepper      = "github.com/ncruces/go-sqlite3/vfs/xts"
)

// setKey derives the cipher from key, hexkey or textkey parameters, as the
// encrypting VFS does. Without encryption, or without a key parameter, it
// does nothing (the key may come later as a PRAGMA).
func (c *codec) setKey(params map[string][]string) error {
	if c.enc == NoEncryption {
		return nil
	}
	var key []byte
	text := false
	switch {
	case len(params["key"]) > 0:
		key = []byte(params["key"][0])
	case len(params["hexkey"]) > 0:
		var err error
		if key, err = hex.DecodeString(params["hexkey"][0]); err != nil {
			return sqlite3.IOERR_BADKEY
		}
	case len(params["textkey"]) > 0 && params["textkey"][0] != "":
		key, text = []byte(params["textkey"][0]), true
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.enc {
	case Adiantum:
		if text {
			key = argon2.IDKey(key, []byte(adiantumPepper), 3, 64*1024, 4, 32)
		}
		if len(key) != 32 {
			return sqlite3.IOERR_BADKEY
		}
		c.adi = adiantum.New(key)
		c.block = make([]byte, adiantumBlock)
	case XTS:
		if text {
			var err error
			if key, err = pbkdf2.Key(sha512.New, string(key), []byte(xtsPepper), 10_000, 32); err != nil {
				return sqlite3.IOERR_BADKEY
			}
		}
		x, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			return sqlite3.IOERR_BADKEY
		}
		c.xts = x
		c.block = make([]byte, xtsSector)
	}
	return nil
}

// blockSize returns the encryption unit, 0 without encryption.
func (c *codec) blockSize() int {
	switch c.enc {
	case Adiantum:
		return adiantumBlock
	case XTS:
		return xtsSector
	}
	return 0
}

// errNoKey means an encrypted database was read before its key was given.
var errNoKey = errors.New("the encryption key is not known yet")

// crypt encrypts or decrypts in place the whole blocks of b, which starts
// at file offset off (a multiple of the block size).
func (c *codec) crypt(b []byte, off int64, encrypt bool) error {
	bs := c.blockSize()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.adi == nil && c.xts == nil {
		return errNoKey
	}
	for i := 0; i+bs <= len(b); i += bs {
		blk := b[i : i+bs]
		o := off + int64(i)
		switch c.enc {
		case Adiantum:
			var tweak [8]byte
			binary.LittleEndian.PutUint64(tweak[:], uint64(o))
			if encrypt {
				c.adi.Encrypt(blk, tweak[:])
			} else {
				c.adi.Decrypt(blk, tweak[:])
			}
		case XTS:
			if encrypt {
				c.xts.Encrypt(blk, blk, uint64(o/xtsSector))
			} else {
				c.xts.Decrypt(blk, blk, uint64(o/xtsSector))
			}
		}
	}
	return nil
}

// Reader returns a reader of the plaintext of a file stored by the stack.
func (c *codec) Reader(r io.ReaderAt) io.ReaderAt {
	if c.enc == NoEncryption {
		return r
	}
	return &decryptReader{c: c, r: r}
}

// StorePage encodes a page as the database file stores it: with a fresh
// checksum if checksums are on (the WAL holds stale ones: ncruces computes
// them only on writes to the database file), then encrypted with the
// tweaks of its offset in the database file.
func (c *codec) StorePage(pgno uint32, page []byte) ([]byte, error) {
	if pgno == 1 && len(page) > headerReserve {
		c.setReserve(page[headerReserve])
	}
	if c.reserve.Load() == 8 {
		putChecksum(page)
	}
	if bs := c.blockSize(); bs != 0 {
		if len(page)%bs != 0 {
			return nil, fmt.Errorf("page size %d is not a multiple of the %d-byte encryption block", len(page), bs)
		}
		if err := c.crypt(page, int64(pgno-1)*int64(len(page)), true); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// putChecksum stores in the last 8 bytes of page the checksum ncruces'
// checksum VFS (and SQLite's cksumvfs) expects: two running 32-bit sums
// over little-endian words.
func putChecksum(page []byte) {
	var s1, s2 uint32
	body := page[:len(page)-8]
	for i := 0; i+8 <= len(body); i += 8 {
		s1 += binary.LittleEndian.Uint32(body[i:]) + s2
		s2 += binary.LittleEndian.Uint32(body[i+4:]) + s1
	}
	binary.LittleEndian.PutUint32(page[len(page)-8:], s1)
	binary.LittleEndian.PutUint32(page[len(page)-4:], s2)
}

// decryptReader reads the plaintext of an encrypted file: it reads whole
// blocks and decrypts them. A torn block decrypts to garbage, which the
// WAL checksum chain rejects.
type decryptReader struct {
	c *codec
	r io.ReaderAt
}

func (d *decryptReader) ReadAt(p []byte, off int64) (int, error) {
	bs := int64(d.c.blockSize())
	start := off - off%bs
	end := off + int64(len(p))
	if rem := end % bs; rem != 0 {
		end += bs - rem
	}
	buf := make([]byte, end-start)
	n, err := d.r.ReadAt(buf, start)
	n -= n % int(bs) // only whole blocks decrypt
	if cerr := d.c.crypt(buf[:n], start, false); cerr != nil {
		return 0, cerr
	}
	got := 0
	if int64(n) > off-start {
		got = copy(p, buf[off-start:n])
	}
	if got < len(p) {
		if err == nil {
			err = io.EOF
		}
		return got, err
	}
	return got, nil
}
