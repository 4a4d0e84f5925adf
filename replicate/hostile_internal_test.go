package replicate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/ltxenc"
	"github.com/walsync/walsync/internal/memstore"
)

// hostileStore is a Storage whose List ignores its arguments and yields
// keys, as a broken or hostile backend might: keys outside the prefix,
// shorter than it, empty.
type hostileStore struct {
	*memstore.Store
	keys []string
}

func (s *hostileStore) List(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		for _, k := range s.keys {
			if !yield(ObjectInfo{Key: k, Size: 1}, nil) {
				return
			}
		}
	}
}

// hostileKeys are not LTX files of any database: shorter than a database's
// prefix, empty elements, bad levels.
var hostileKeys = []string{
	"", "d", "db", "db/", "db/0", "db/0000", "db/0000/", "db/0009/x",
	"/", "//", "///", "/0000/0000000000000001-0000000000000001.ltx",
	"a/-001/0000000000000001-0000000000000001.ltx", // a signed level
	"a/+009/0000000000000001-0000000000000001.ltx",
	"a//0000000000000001-0000000000000001.ltx",
	"db/000g/0000000000000001-0000000000000001.ltx",
	"db/0009/0000000000000002-0000000000000003.ltx", // a snapshot must start at TXID 1
}

func TestListLTXFiles_HostileKeys(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		keys := append([]string{
			"db/0000/0000000000000002-0000000000000002.ltx",
			"db/0009/0000000000000001-0000000000000001.ltx",
			"dc/0000/0000000000000003-0000000000000003.ltx", // outside the prefix, as long as it
		}, hostileKeys...)
		files, err := listLTXFiles(t.Context(), &hostileStore{Store: memstore.New(), keys: keys}, "db")
		if err != nil {
			t.Fatalf("listLTXFiles: %v", err)
		}
		var got []string
		for _, f := range files {
			got = append(got, f.key)
		}
		if got, want := fmt.Sprint(got), "[db/0000/0000000000000002-0000000000000002.ltx db/0009/0000000000000001-0000000000000001.ltx]"; got != want {
			t.Fatalf("listLTXFiles=%s, want %s", got, want)
		}
	})
	t.Run("ErrNoBackup", func(t *testing.T) {
		keys := append([]string{"dc/0000/0000000000000001-0000000000000001.ltx"}, hostileKeys...)
		store := &hostileStore{Store: memstore.New(), keys: keys}
		_, err := Restore(t.Context(), store, "db", filepath.Join(t.TempDir(), "out.db"), RestoreOptions{})
		if !errors.Is(err, ErrNoBackup) {
			t.Fatalf("Restore err=%v, want ErrNoBackup", err)
		}
	})
}

func TestListDatabases_HostileKeys(t *testing.T) {
	store := &hostileStore{Store: memstore.New(), keys: hostileKeys}
	dbs, err := ListDatabases(t.Context(), store)
	if err != nil {
		t.Fatalf("ListDatabases: %v", err)
	}
	if len(dbs) != 0 {
		t.Fatalf("ListDatabases=%+v, want none", dbs)
	}
}

// hostilePageSize is the page size of the crafted corpus.
const hostilePageSize = 4096

// craftLTX encodes a file of the crafted corpus with ltxenc, which checks
// less than ltx.Encoder (a snapshot may miss pages): pages are filled from
// a generator seeded by the page number and TXID, so the corpus is the same
// at every run.
func craftLTX(t testing.TB, hdr ltx.Header, pages ...uint32) []byte {
	t.Helper()
	if hdr.Version == 0 {
		hdr.Version = ltx.Version
	}
	if hdr.PageSize == 0 {
		hdr.PageSize = hostilePageSize
	}
	hdr.Flags |= ltx.HeaderFlagNoChecksum
	if hdr.Timestamp == 0 {
		hdr.Timestamp = 1_700_000_000_000 + int64(hdr.MaxTXID)
	}
	var buf bytes.Buffer
	w, err := ltxenc.NewWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	data := make([]byte, hdr.PageSize)
	for _, pgno := range pages {
		rng := rand.New(rand.NewPCG(uint64(pgno), uint64(hdr.MaxTXID)))
		for i := 0; i < len(data); i += 8 {
			binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
		}
		if err := w.Page(pgno, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// resum rewrites the file checksum of a crafted file after an edit, so
// that only the edited field is hostile.
func resum(b []byte) []byte {
	crc := crc64.Checksum(b[:len(b)-8], crc64.MakeTable(crc64.ISO))
	binary.BigEndian.PutUint64(b[len(b)-8:], uint64(ltx.ChecksumFlag|ltx.Checksum(crc)))
	return b
}

// hostileCase is one crafted backup of database "db" and what restoring
// it must answer.
type hostileCase struct {
	name    string
	objects map[string][]byte
	want    string // error substring (the object's key, or a reason); "" restores
	opts    RestoreOptions
}

func hdrTX(lo, hi ltx.TXID, commit uint32) ltx.Header {
	return ltx.Header{MinTXID: lo, MaxTXID: hi, Commit: commit}
}

// hostileCases builds the crafted corpus on a base chain: a 3-page
// snapshot (TXID 1), a segment rewriting page 2 (TXID 2) and one growing
// the database to 4 pages (TXID 3). The first case is the valid chain.
func hostileCases(t testing.TB) []hostileCase {
	snap := craftLTX(t, hdrTX(1, 1, 3), 1, 2, 3)
	seg2 := craftLTX(t, hdrTX(2, 2, 3), 2)
	seg3 := craftLTX(t, hdrTX(3, 3, 4), 1, 4)
	k1, k2, k3 := ltxKey("db", 9, 1, 1), ltxKey("db", 0, 2, 2), ltxKey("db", 0, 3, 3)
	base := func(extra map[string][]byte) map[string][]byte {
		m := map[string][]byte{k1: snap, k2: seg2, k3: seg3}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	edit := func(b []byte, f func([]byte)) []byte {
		c := bytes.Clone(b)
		f(c)
		return resum(c)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[(i+len(c))%len(c)] ^= 0xff
		return c
	}
	none := RestoreOptions{}
	return []hostileCase{
		{"OK", base(nil), "", none},
		{"Truncated", base(map[string][]byte{k3: seg3[:len(seg3)/2]}), k3, none},
		{"TruncatedHeader", base(map[string][]byte{k3: seg3[:50]}), k3, none},
		{"Empty", base(map[string][]byte{k3: {}}), k3, none},
		{"BadFileChecksum", base(map[string][]byte{k3: flip(seg3, -1)}), k3, none},
		{"CorruptPage", base(map[string][]byte{k2: flip(seg2, ltx.HeaderSize+20)}), k2, none},
		{"WrongPageSize", base(map[string][]byte{k3: craftLTX(t, ltx.Header{MinTXID: 3, MaxTXID: 3, Commit: 2, PageSize: 8192}, 1, 2)}), k3, none},
		{"HeaderKeyMismatch", base(map[string][]byte{k3: craftLTX(t, hdrTX(4, 4, 4), 1, 4)}), k3, none},
		{"ReversedHeaderTXIDs", base(map[string][]byte{k3: edit(seg3, func(b []byte) {
			binary.BigEndian.PutUint64(b[16:], 4) // min 4 > max 3
		})}), k3, none},
		{"HugeCommitSnapshot", base(map[string][]byte{k1: craftLTX(t, hdrTX(1, 1, maxPageCount), 1, 2, 3)}), k1, none},
		{"CommitPastSQLiteMax", base(map[string][]byte{k1: edit(snap, func(b []byte) {
			binary.BigEndian.PutUint32(b[12:], 0xffffffff)
		})}), k1, none},
		{"SnapshotMissesPages", base(map[string][]byte{k1: craftLTX(t, hdrTX(1, 1, 1000), 1, 2, 3)}), k1, none},
		{"SnapshotHole", base(map[string][]byte{k1: craftLTX(t, hdrTX(1, 1, 3), 1, 3)}), k1, none},
		{"SegmentGrowsWithoutPages", base(map[string][]byte{k3: craftLTX(t, hdrTX(3, 3, 1<<20), 1, 1<<20)}), k3, none},
		{"SegmentHugeCommit", base(map[string][]byte{k3: craftLTX(t, hdrTX(3, 3, maxPageCount), 1, maxPageCount)}), k3, none},
		{"HugeFrameSize", base(map[string][]byte{k2: edit(seg2, func(b []byte) {
			binary.BigEndian.PutUint32(b[ltx.HeaderSize+ltx.PageHeaderSize:], 0xfffffff0)
		})}), k2, none},
		{"Gap", base(map[string][]byte{k2: nil}), "not restorable", none},
		{"GapBeforeTimestamp", base(map[string][]byte{k2: nil}), k3, RestoreOptions{Timestamp: time.UnixMilli(1_800_000_000_000)}},
		{"NoSnapshot", base(map[string][]byte{k1: nil}), "not restorable", none},
		{"SnapshotNotAtTXID1", base(map[string][]byte{k1: nil, ltxKey("db", 9, 2, 2): craftLTX(t, hdrTX(2, 2, 3), 1, 2, 3)}), "not restorable", none},
		{"ForgedLevel1", base(map[string][]byte{ltxKey("db", 1, 2, 3): craftLTX(t, ltx.Header{MinTXID: 2, MaxTXID: 3, Commit: 3, Timestamp: 1_700_000_000_002}, 2)}),
			ltxKey("db", 1, 2, 3), none},
		{"JunkKeysIgnored", base(map[string][]byte{
			"db/00zz/0000000000000001-0000000000000001.ltx": []byte("junk"),
			"db/0000/zz.ltx": []byte("junk"),
			"db/0000/0000000000000005-0000000000000004.ltx":     seg3, // reversed range
			"db/0000/0000000000000004-0000000000000004.ltx.tmp": seg3,
		}), "", none},
	}
}

// TestRestoreHostile restores each crafted backup: a hostile one is
// refused with one line naming the object (or the reason), no output file
// and no temporary file left, and no page-count-sized allocation. Each
// runs with whole-object GETs and with every object downloaded in ranged
// parts (verified by the merge instead of as it arrives).
func TestRestoreHostile(t *testing.T) {
	for _, mode := range []struct {
		name string
		big  int64
	}{{"Whole", bigObjectSize}, {"Ranged", 16}} {
		t.Run(mode.name, func(t *testing.T) {
			defer func(b, p int64) { bigObjectSize, partSize = b, p }(bigObjectSize, partSize)
			bigObjectSize, partSize = mode.big, 64
			testRestoreHostile(t)
		})
	}
}

func testRestoreHostile(t *testing.T) {
	for _, c := range hostileCases(t) {
		t.Run(c.name, func(t *testing.T) {
			store := memstore.New()
			for k, v := range c.objects {
				if err := store.Put(t.Context(), k, bytes.NewReader(v), int64(len(v)), nil); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "out.db")
			opts := c.opts
			opts.Check = IntegrityNone
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res, err := Restore(t.Context(), store, "db", out, opts)
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("restore allocated %d MiB", alloc>>20)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("Restore: %v", err)
				}
				if res.TXID != 3 || res.Pages != 4 {
					t.Fatalf("Restore=%+v, want TXID 3, 4 pages", res)
				}
				return
			}
			if err == nil {
				fi, _ := os.Stat(out)
				t.Fatalf("Restore=%+v (output %v), want an error naming %s", res, fi, c.want)
			}
			t.Log(err)
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s", msg, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("output directory holds %d entries after a refused restore", len(ents))
			}
		})
	}
}

// TestListDatabases_JunkObject: an object with an LTX name but no LTX
// content, in a database of its own or in a real one, does not break the
// listing of the target (it did on main: the whole list failed).
func TestListDatabases_JunkObject(t *testing.T) {
	for _, junk := range []string{
		"app.db/00zz/0000/0000000000000001-0000000000000001.ltx",
		"db/0000/0000000000000004-0000000000000004.ltx",
	} {
		store := memstore.New()
		objs := hostileCases(t)[0].objects
		objs[junk] = []byte("junk")
		for k, v := range objs {
			if err := store.Put(t.Context(), k, bytes.NewReader(v), int64(len(v)), nil); err != nil {
				t.Fatal(err)
			}
		}
		dbs, err := ListDatabases(t.Context(), store)
		if err != nil {
			t.Fatalf("%s: ListDatabases: %v", junk, err)
		}
		var names []string
		for _, d := range dbs {
			names = append(names, d.Name)
		}
		if !slices.Contains(names, "db") {
			t.Errorf("%s: ListDatabases=%v, want db listed", junk, names)
		}
	}
}
