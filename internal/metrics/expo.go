// Package metrics writes walsync's metrics in the Prometheus text
// exposition format, version 0.0.4, without a client library: a scrape
// renders the replicator's counters and the status of its databases into
// one buffer, and nothing is kept between scrapes.
//
//	var buf bytes.Buffer
//	metrics.Write(&buf, r.Metrics(), statuses, metrics.Options{MaxDBs: 100})
//	w.Header().Set("Content-Type", metrics.ContentType)
//
// Per-database series are bounded (see [Options].MaxDBs), so the number of
// series does not grow with the number of databases past the bound.
//
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
package metrics

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ContentType is the Content-Type of the text format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Metric types, as the TYPE line names them.
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
)

// expo accumulates the exposition text. A family is a header (HELP and
// TYPE) followed by its samples, all contiguous.
type expo struct {
	b []byte
}

// header starts the family name.
func (e *expo) header(name, typ, help string) {
	e.b = append(e.b, "# HELP "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = appendEscaped(e.b, help, false)
	e.b = append(e.b, "\n# TYPE "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = append(e.b, typ...)
	e.b = append(e.b, '\n')
}

// sample writes one sample of name with labels given as name, value pairs.
func (e *expo) sample(name string, v float64, labels ...string) {
	e.b = append(e.b, name...)
	if len(labels) > 0 {
		e.b = append(e.b, '{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, labels[i]...)
			e.b = append(e.b, `="`...)
			e.b = appendEscaped(e.b, labels[i+1], true)
			e.b = append(e.b, '"')
		}
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, ' ')
	e.b = appendValue(e.b, v)
	e.b = append(e.b, '\n')
}

// single writes a family of one unlabelled sample.
func (e *expo) single(name, typ, help string, v float64) {
	e.header(name, typ, help)
	e.sample(name, v)
}

// histogram writes the samples of a histogram: cumulative buckets by upper
// bound (bounds ascending, counts cumulative), then +Inf, _sum and _count.
func (e *expo) histogram(name string, bounds []float64, counts []uint64, count uint64, sum float64) {
	for i, le := range bounds {
		e.sample(name+"_bucket", float64(counts[i]), "le", strconv.FormatFloat(le, 'g', -1, 64))
	}
	e.sample(name+"_bucket", float64(count), "le", "+Inf")
	e.sample(name+"_sum", sum)
	e.sample(name+"_count", float64(count))
}

// appendValue appends v as the format spells floats.
func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendEscaped appends s escaped as the format requires: backslash and
// line feed in HELP text, and also double quotes in label values; bytes
// that are not UTF-8 become U+FFFD.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if !strings.ContainsAny(s, "\\\n\"") {
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
