package bench

import (
	"cmp"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The chart is drawn with image/png and a bitmap font rather than a
// plotting library: gonum.org/v1/plot, linked into the walsync binary,
// added 3.5 MiB to the RSS of every `walsync watch` (its fonts are loaded
// at init), which is what this bench measures.

// Chart geometry, in pixels.
const (
	plotW, plotH             = 960, 600
	marginL, marginR         = 70, 250
	marginT, marginB         = 50, 60
	markerHalf, lineHalfWide = 3, 1
)

// seriesColors are the line colours, in the order series first appear.
var seriesColors = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, // blue
	{0xd6, 0x27, 0x28, 0xff}, // red
	{0xff, 0x7f, 0x0e, 0xff}, // orange
	{0x2c, 0xa0, 0x2c, 0xff}, // green
	{0x94, 0x67, 0xbd, 0xff}, // purple
	{0x8c, 0x56, 0x4b, 0xff}, // brown
}

type point struct{ x, y float64 }

type series struct {
	label  string
	pts    []point
	failed []int // database counts at which the tool failed without a figure
}

// WritePlot writes a PNG chart of the average RSS (MiB) against the number
// of databases, both on log scales, with one line per tool/mode. Rows that
// were skipped or have no memory figure are left out.
func WritePlot(path string, rows []Row) error {
	var ss []*series
	for _, r := range rows {
		if r.Skipped {
			continue
		}
		label := r.Tool + "/" + r.Mode
		i := slices.IndexFunc(ss, func(s *series) bool { return s.label == label })
		if i < 0 {
			ss = append(ss, &series{label: label})
			i = len(ss) - 1
		}
		if r.RSSAvgKB <= 0 {
			ss[i].failed = append(ss[i].failed, r.DBs)
			continue
		}
		ss[i].pts = append(ss[i].pts, point{float64(r.DBs), mib(r.RSSAvgKB)})
	}
	ss = slices.DeleteFunc(ss, func(s *series) bool { return len(s.pts) == 0 })
	if len(ss) == 0 {
		return fmt.Errorf("plot %s: no row has a memory figure", path)
	}
	img := drawChart(ss)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

// logRange returns whole decades around the values.
func logRange(vals []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = min(lo, math.Log10(v)), max(hi, math.Log10(v))
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi
}

func drawChart(ss []*series) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	var xs, ys []float64
	for _, s := range ss {
		slices.SortFunc(s.pts, func(a, b point) int { return cmp.Compare(a.x, b.x) })
		for _, p := range s.pts {
			xs, ys = append(xs, p.x), append(ys, p.y)
		}
	}
	xlo, xhi := logRange(xs)
	ylo, yhi := logRange(ys)
	x0, x1, y0, y1 := marginL, plotW-marginR, plotH-marginB, marginT
	px := func(x float64) int { return x0 + int(math.Round((math.Log10(x)-xlo)/(xhi-xlo)*float64(x1-x0))) }
	py := func(y float64) int { return y0 - int(math.Round((math.Log10(y)-ylo)/(yhi-ylo)*float64(y0-y1))) }

	grid := color.RGBA{0xe0, 0xe0, 0xe0, 0xff}
	black := color.RGBA{0, 0, 0, 0xff}
	for d := xlo; d <= xhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > xhi+1e-9 {
				break
			}
			x := px(v)
			line(img, x, y0, x, y1, grid, 0)
			if m == 1 {
				text(img, x-3*len(num(v)), y0+18, num(v), black)
			}
		}
	}
	for d := ylo; d <= yhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > yhi+1e-9 {
				break
			}
			y := py(v)
			line(img, x0, y, x1, y, grid, 0)
			text(img, x0-8-7*len(num(v)), y+4, num(v), black)
		}
	}
	line(img, x0, y0, x1, y0, black, 0)
	line(img, x0, y0, x0, y1, black, 0)
	text(img, x0, marginT-30, "RSS (MiB, average over the window) vs number of databases, log scales", black)
	text(img, (x0+x1)/2-70, plotH-18, "databases (log scale)", black)
	text(img, 4, marginT-12, "RSS MiB", black)

	for i, s := range ss {
		c := seriesColors[i%len(seriesColors)]
		for j, p := range s.pts {
			x, y := px(p.x), py(p.y)
			if j > 0 {
				q := s.pts[j-1]
				line(img, px(q.x), py(q.y), x, y, c, lineHalfWide)
			}
			fill(img, image.Rect(x-markerHalf, y-markerHalf, x+markerHalf+1, y+markerHalf+1), c)
		}
		ly := marginT + 10 + 36*i
		fill(img, image.Rect(x1+20, ly-2, x1+44, ly+2), c)
		text(img, x1+52, ly+4, s.label, black)
		if len(s.failed) > 0 {
			var ns []string
			for _, n := range s.failed {
				ns = append(ns, strconv.Itoa(n))
			}
			text(img, x1+52, ly+18, "failed at "+strings.Join(ns, ", "), c)
		}
	}
	return img
}

// num formats an axis value: 1, 20, 500, 1000, 10000.
func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r.Intersect(img.Bounds()), image.NewUniform(c), image.Point{}, draw.Src)
}

// line draws a line from (x0,y0) to (x1,y1), half pixels either side.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, half int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		for ox := -half; ox <= half; ox++ {
			for oy := -half; oy <= half; oy++ {
				img.SetRGBA(x0+ox, y0+oy, c)
			}
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func abs(v int) int { return max(v, -v) }

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
