package s3_test

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/s3"
)

// BenchmarkPut stores small objects, the size of a typical WAL segment, one
// after the other, as the uploader does for each database.
func BenchmarkPut(b *testing.B) {
	endpoint, bucket := testenv.S3(b)
	c, err := s3.New(b.Context(), s3.Config{Bucket: bucket, Prefix: "bench", Endpoint: endpoint, PathStyle: true})
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("walsync!"), 16<<10/8)
	meta := map[string]string{"walsync-db": "app.db"}
	r := bytes.NewReader(data)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		r.Reset(data)
		if err := c.Put(b.Context(), "app.db/"+strconv.Itoa(i), r, int64(len(data)), meta); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestClient_PutAllocs keeps the allocations of a small Put in check: the
// SDK's S3 client made 600 for what takes under 200 here, a new connection
// included (versitygw closes each one).
func TestClient_PutAllocs(t *testing.T) {
	c := newClient(t, "allocs")
	data := bytes.Repeat([]byte("walsync!"), 16<<10/8)
	meta := map[string]string{"walsync-db": "app.db"}
	r := bytes.NewReader(data)
	i := 0
	allocs := testing.AllocsPerRun(50, func() {
		r.Reset(data)
		i++
		if err := c.Put(t.Context(), "app.db/"+strconv.Itoa(i), r, int64(len(data)), meta); err != nil {
			t.Fatal(err)
		}
	})
	if max := 250.0; allocs > max {
		t.Fatalf("Put of 16 KiB: %.0f allocations, want at most %.0f", allocs, max)
	}
	t.Logf("Put of 16 KiB: %.0f allocations", allocs)
}
