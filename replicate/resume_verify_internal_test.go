package replicate

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"
)

// newestKey returns the key of the newest segment (or snapshot) of "db".
func (f *fixture) newestKey() string {
	f.t.Helper()
	rs, err := loadRemoteState(f.ctx, f.store, "db", nil)
	if err != nil || rs.last.key == "" {
		f.t.Fatalf("newest file: %+v, %v", rs.last, err)
	}
	return rs.last.key
}

// replaceObject stores b under key in place of what is there (the store
// computes a fresh SHA-256, so only the LTX checks can catch a change).
func (f *fixture) replaceObject(key string, b []byte) {
	f.t.Helper()
	if err := f.store.Delete(f.ctx, key); err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.Put(f.ctx, key, bytes.NewReader(b), int64(len(b)), map[string]string{MetaTimestamp: time.Now().UTC().Format(time.RFC3339Nano)}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) objectBytes(key string) []byte {
	f.t.Helper()
	rc, err := f.store.Get(f.ctx, key, 0, -1)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// reencode rewrites the LTX file b with edit applied to its header: a
// valid file (checksums recomputed) that lies about its header.
func reencode(t *testing.T, b []byte, edit func(*ltx.Header)) []byte {
	t.Helper()
	dec := ltx.NewDecoder(bytes.NewReader(b))
	if err := dec.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	hdr := dec.Header()
	edit(&hdr)
	var out bytes.Buffer
	enc, err := ltx.NewEncoder(&out)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if err := enc.EncodePage(ph, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := dec.Close(); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(dec.Trailer().PostApplyChecksum)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// restartReplicator stops the replicator and starts another on the same
// target, as a restart of walsync does.
func (f *fixture) restartReplicator(opts Options) {
	f.t.Helper()
	if err := f.r.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.start(opts)
}

// TestResumeVerifiesNewestFile: walsync resumes from the header of the
// newest file in the target. Before, it read that header with an
// unverified range GET: one flipped byte in its timestamp made every later
// timestamp absurd, for good, and a header recording a WAL size too large
// made walsync resume past commits made while it was stopped (restore exit
// 0, committed rows missing). Now the file is read whole and verified, its
// timestamp bounded and its last recorded WAL frame compared with the WAL;
// each case is a discontinuity answered with a snapshot, and the restore
// equals the source.
func TestResumeVerifiesNewestFile(t *testing.T) {
	opts := Options{SyncInterval: SyncImmediately, CheckpointFrames: 1 << 20}
	for _, tc := range []struct {
		name   string
		damage func(f *fixture, key string, b []byte) []byte
		reason string
	}{
		{"FlippedTimestampByte", func(f *fixture, key string, b []byte) []byte {
			b = bytes.Clone(b)
			b[34] ^= 0x10 // the header's timestamp (bytes 32-39): about 557 years later
			return b
		}, "does not verify"},
		{"TimestampInTheFuture", func(f *fixture, key string, b []byte) []byte {
			return reencode(f.t, b, func(h *ltx.Header) { h.Timestamp = time.Now().Add(24 * time.Hour).UnixMilli() })
		}, "timestamp in the future"},
		{"WALSizeTooLarge", func(f *fixture, key string, b []byte) []byte {
			// Commits made while walsync was stopped follow the recorded
			// range in the WAL; a header claiming them would skip them.
			extra := f.walSize() - f.d.pos.Offset
			if extra <= 0 {
				f.t.Fatal("no WAL written while walsync was stopped")
			}
			return reencode(f.t, b, func(h *ltx.Header) { h.WALSize += extra })
		}, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, opts)
			f.write(3)
			f.sync()
			f.write(2)
			f.sync()
			key := f.newestKey()
			old := f.objectBytes(key)
			pos := f.d.pos
			if err := f.r.Close(); err != nil {
				t.Fatal(err)
			}
			for range 10 { // commits while walsync is stopped
				f.write(1)
			}
			f.d.pos = pos
			f.replaceObject(key, tc.damage(f, key, old))

			f.start(opts)
			f.write(1)
			f.sync()
			f.wantSnapshot(tc.reason)
			f.checkRestore()
			newest, err := loadRemoteState(f.ctx, f.store, "db", nil)
			if err != nil || newest.corrupt != nil {
				t.Fatalf("target after the snapshot: %v %v", err, newest.corrupt)
			}
			if ts := time.UnixMilli(newest.hdr.Timestamp); ts.After(time.Now().Add(time.Minute)) {
				t.Fatalf("newest timestamp %s is in the future", ts)
			}
		})
	}
}

// TestResumeIntactResumes: an intact newest file still resumes without a
// snapshot (the verification must not turn every restart into one).
func TestResumeIntactResumes(t *testing.T) {
	opts := Options{SyncInterval: SyncImmediately, CheckpointFrames: 1 << 20}
	f := newFixture(t, opts)
	f.write(3)
	f.sync()
	f.write(2)
	f.sync()
	before := len(f.snapshots())
	f.restartReplicator(opts)
	f.write(4)
	f.sync()
	if got := f.snapshots(); len(got) != before {
		t.Fatalf("snapshots after a clean restart: %q, want none since the first %d", got, before)
	}
	if !strings.Contains(f.log.String(), "msg=resuming") {
		t.Fatalf("no resume logged:\n%s", f.log)
	}
	f.checkRestore()
}
