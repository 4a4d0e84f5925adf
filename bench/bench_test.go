package bench

import (
	"image/png"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct{ method, target, want string }{
		{"PUT", "/bucket/p/db.db/0000/0000000000000001-0000000000000001.ltx", ReqPut},
		{"GET", "/bucket/p/db.db/0000/0000000000000001-0000000000000001.ltx", ReqGet},
		{"GET", "/bucket?list-type=2&prefix=p%2F", ReqList},
		{"GET", "/bucket/?prefix=p", ReqList},
		{"GET", "/bucket", ReqList},
		{"HEAD", "/bucket/key", ReqHead},
		{"HEAD", "/bucket", ReqHead},
		{"DELETE", "/bucket/key", ReqDelete},
		{"POST", "/bucket?delete", ReqPost},
		{"PATCH", "/bucket/key", ReqOther},
	} {
		if got := classify(httptest.NewRequest(tc.method, tc.target, nil)); got != tc.want {
			t.Errorf("%s %s = %s, want %s", tc.method, tc.target, got, tc.want)
		}
	}
}

func TestForRun(t *testing.T) {
	t.Run("S3", func(t *testing.T) {
		tg, err := newTargets(Config{Target: "s3://b/base?endpoint=http://127.0.0.1:9&region=r1&path-style=true"}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer tg.Close()
		rt := tg.forRun("litestream-one-process-n5")
		if !strings.Contains(rt.walsync, "endpoint="+strings.ReplaceAll(strings.ReplaceAll(tg.proxy.url, ":", "%3A"), "/", "%2F")) {
			t.Errorf("walsync URL %s does not go through the proxy %s", rt.walsync, tg.proxy.url)
		}
		if strings.Contains(rt.direct, "127.0.0.1%3A9") == false {
			t.Errorf("direct URL %s is not the endpoint's", rt.direct)
		}
		got := rt.litestream("db000001.db")
		if !strings.HasPrefix(got, "s3://b/base/bench-") || !strings.Contains(got, "/litestream-one-process-n5/db000001.db?") ||
			!strings.Contains(got, "forcePathStyle=true") || !strings.Contains(got, "region=r1") {
			t.Errorf("litestream URL = %s", got)
		}
	})
	t.Run("File", func(t *testing.T) {
		dir := t.TempDir()
		tg, err := newTargets(Config{}, dir)
		if err != nil {
			t.Fatal(err)
		}
		rt := tg.forRun("walsync-one-process-n1")
		if got, want := rt.walsync, "file://"+filepath.Join(dir, "target", "walsync-one-process-n1"); got != want {
			t.Errorf("walsync URL = %s, want %s", got, want)
		}
		if got, want := rt.count.unit(), "objects"; got != want {
			t.Errorf("unit = %s, want %s", got, want)
		}
	})
}

func TestWritePlot(t *testing.T) {
	var rows []Row
	for _, n := range []int{1, 5, 10, 20, 100, 1000, 10000} {
		rows = append(rows, Row{Tool: ToolWalsync, Mode: ModeOneProcess, DBs: n, RSSAvgKB: int64(16000 + 5*n)})
		if n <= 100 {
			rows = append(rows,
				Row{Tool: ToolLitestream, Mode: ModeProcessPerDB, DBs: n, RSSAvgKB: int64(53000 * n)},
				Row{Tool: ToolLitestream, Mode: ModeOneProcess, DBs: n, RSSAvgKB: int64(52000 + 900*n)})
		}
	}
	rows = append(rows, Row{Tool: ToolLitestream, Mode: ModeOneProcess, DBs: 10000, Error: "crashed"})
	path := filepath.Join(t.TempDir(), "rss.png")
	if err := WritePlot(path, rows); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := img.Bounds().Dx(), plotW; got != want {
		t.Errorf("width = %d, want %d", got, want)
	}
	if out := os.Getenv("BENCH_PLOT_OUT"); out != "" {
		b, _ := os.ReadFile(path)
		os.WriteFile(out, b, 0o644)
	}
}

func TestProxyStored(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "denied") {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer backend.Close()
	p, err := startProxy(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, req := range []struct{ method, target string }{
		{"PUT", "/b/run1/db.db/0000/0000000000000002-0000000000000002.ltx"},
		{"PUT", "/b/run1/db.db/0009/0000000000000001-0000000000000001.ltx?partNumber=1&uploadId=u"}, // a part
		{"POST", "/b/run1/db.db/0009/0000000000000001-0000000000000001.ltx?uploads"},                // starts an upload
		{"POST", "/b/run1/db.db/0009/0000000000000001-0000000000000005.ltx?uploadId=u"},             // completes one
		{"PUT", "/b/run1/db.db/0000/denied"},
		{"GET", "/b/run1/db.db/0000/0000000000000003-0000000000000003.ltx"},
		{"PUT", "/b/run2/db.db/0000/0000000000000001-0000000000000001.ltx"},
	} {
		r, err := http.NewRequest(req.method, p.url+req.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := slices.Sorted(maps.Keys(p.takeStored("b/run1/")))
	want := []string{"db.db/0000/0000000000000002-0000000000000002.ltx", "db.db/0009/0000000000000001-0000000000000005.ltx"}
	if !slices.Equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if got := p.takeStored("b/run1/"); len(got) != 0 {
		t.Fatalf("taken twice: %v", got)
	}
	if got := slices.Collect(maps.Keys(p.takeStored("b/"))); !slices.Equal(got, []string{"run2/db.db/0000/0000000000000001-0000000000000001.ltx"}) {
		t.Fatalf("other run: %v", got)
	}
}
