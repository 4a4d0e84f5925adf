package replicate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/superfly/ltx"
	"golang.org/x/sync/errgroup"
)

// mergeDownloads bounds the inputs of one compaction downloaded at a time.
const mergeDownloads = 4

// mergeSpillEntries is the output page index size beyond which the
// encoder moves it to a file in the spool directory, so that a compaction
// of a large database holds no database-sized map.
const mergeSpillEntries = 16 << 10

// merge compacts run, contiguous files of level l-1, into one file of
// level l and uploads it. The inputs are copied from the stage (segments
// this process uploaded, stage.go) or downloaded (their SHA-256 verified
// by the store) into one unlinked file in the spool directory,
// mergeDownloads at a time, then merged page by page with ltx's streaming
// compactor (one page buffer per input; the newest version of each page
// wins) into a second unlinked file, which is verified whole before it is
// uploaded. Memory does not grow with the database or the files.
func (c *compactor) merge(ctx context.Context, d *DB, l int, run []ltxFile) (ltxFile, error) {
	dir := c.r.opts.SpoolDir
	in, err := createUnlinked(dir, "walsync-compact-in-*")
	if err != nil {
		return ltxFile{}, err
	}
	defer in.Close()
	offs := make([]int64, len(run))
	var total int64
	for i, f := range run {
		offs[i] = total
		total += f.size
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(mergeDownloads)
	var sg *stage
	if st, ok := c.state(d); ok && l == 1 {
		sg = st.stage
	}
	for i, f := range run {
		w := io.NewOffsetWriter(in, offs[i])
		if sg != nil {
			if ok, err := sg.copyTo(f, w); err != nil {
				return ltxFile{}, err
			} else if ok {
				c.r.metrics.stagedInputs.Add(1)
				continue
			}
		}
		g.Go(func() error { return download(gctx, c.r.store, f, w) })
	}
	if err := g.Wait(); err != nil {
		return ltxFile{}, err
	}

	rdrs := make([]io.Reader, len(run))
	for i, f := range run {
		rdrs[i] = io.NewSectionReader(in, offs[i], f.size) // local file: no read buffer
	}
	out, err := createUnlinked(dir, "walsync-compact-out-*")
	if err != nil {
		return ltxFile{}, err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 16<<10)
	comp, err := ltx.NewCompactor(bw, rdrs)
	if err != nil {
		return ltxFile{}, err
	}
	comp.HeaderFlags = ltx.HeaderFlagNoChecksum
	comp.SetSpillDir(dir)
	comp.SetSpillThreshold(mergeSpillEntries)
	defer comp.Cleanup()
	if err := comp.Compact(ctx); err != nil {
		return ltxFile{}, fmt.Errorf("compact %s..%s into level %d: %w", run[0].key, run[len(run)-1].key, l, err)
	}
	if err := bw.Flush(); err != nil {
		return ltxFile{}, err
	}
	size, err := out.Seek(0, io.SeekCurrent)
	if err != nil {
		return ltxFile{}, err
	}
	hdr := comp.Header()
	// Verify what is about to replace the inputs before it is uploaded.
	if err := ltx.NewDecoder(bufio.NewReader(io.NewSectionReader(out, 0, size))).Verify(); err != nil {
		return ltxFile{}, fmt.Errorf("compact into level %d: output does not verify: %w", l, err)
	}
	key := ltxKey(d.name, l, hdr.MinTXID, hdr.MaxTXID)
	if _, ok := c.state(d); !ok {
		return ltxFile{}, errCompactionGone
	}
	meta := map[string]string{MetaTimestamp: time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano)}
	if err := c.r.store.Put(ctx, key, io.NewSectionReader(out, 0, size), size, meta); err != nil {
		return ltxFile{}, fmt.Errorf("upload %s: %w", key, err)
	}
	c.r.metrics.compactedBytes.Add(size)
	return ltxFile{level: l, minTXID: hdr.MinTXID, maxTXID: hdr.MaxTXID, size: size, key: key}, nil
}

// download copies object f whole into w; the store verifies its SHA-256
// at the end, and the size must be the listed one.
func download(ctx context.Context, store Storage, f ltxFile, w io.Writer) error {
	rc, err := store.Get(ctx, f.key, 0, -1)
	if err != nil {
		return fmt.Errorf("download %s: %w", f.key, err)
	}
	defer rc.Close()
	n, err := copyPooled(w, rc)
	if err != nil {
		return fmt.Errorf("download %s: %w", f.key, err)
	}
	if n != f.size {
		return fmt.Errorf("download %s: %d bytes, listed as %d", f.key, n, f.size)
	}
	return nil
}
