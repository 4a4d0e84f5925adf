package metrics

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A strict checker of the Prometheus text format 0.0.4, stricter than
// Prometheus itself where walsync's output should be: every family has a
// HELP and a TYPE before its samples, families are contiguous, no series
// appears twice, histograms are complete and cumulative, counters are not
// negative. It returns each series' value keyed by series (name and
// labels, sorted).
//
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-format-details

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// exposition is a parsed exposition.
type exposition struct {
	series   map[string]float64 // by seriesKey
	families []string           // in order
	types    map[string]string
	labels   map[string][]map[string]string // the label sets of each sample name
}

func (x *exposition) value(name string, labels ...string) (float64, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		m[labels[i]] = labels[i+1]
	}
	v, ok := x.series[seriesKey(name, m)]
	return v, ok
}

func seriesKey(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		fmt.Fprintf(&b, ",%s=%q", k, labels[k])
	}
	return b.String()
}

type histState struct {
	lastLE   float64
	lastCum  float64
	infCount float64
	hasInf   bool
	hasSum   bool
	count    float64
	hasCount bool
}

func parseStrict(text string) (*exposition, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("does not end with a line feed")
	}
	x := &exposition{series: map[string]float64{}, types: map[string]string{}, labels: map[string][]map[string]string{}}
	helps := map[string]bool{}
	closed := map[string]bool{}
	cur := ""
	hists := map[string]*histState{} // by family and labels other than le
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("line %d %q: %s", n+1, line, fmt.Sprintf(format, a...))
		}
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 || f[0] != "#" || (f[1] != "HELP" && f[1] != "TYPE") {
				return nil, fail("not a HELP or TYPE line")
			}
			name := f[2]
			if !metricName.MatchString(name) {
				return nil, fail("bad metric name")
			}
			if name != cur {
				if closed[name] || helps[name] || x.types[name] != "" {
					return nil, fail("family %s appears twice", name)
				}
				if cur != "" {
					closed[cur] = true
				}
				cur = name
				x.families = append(x.families, name)
			}
			if f[1] == "HELP" {
				if helps[name] {
					return nil, fail("second HELP")
				}
				if bad := badEscape(f[3], false); bad != "" {
					return nil, fail("HELP: %s", bad)
				}
				helps[name] = true
				continue
			}
			if x.types[name] != "" {
				return nil, fail("second TYPE")
			}
			switch f[3] {
			case "counter", "gauge", "histogram":
			default:
				return nil, fail("type %q", f[3])
			}
			x.types[name] = f[3]
			continue
		}
		name, labels, value, err := parseSample(line)
		if err != nil {
			return nil, fail("%v", err)
		}
		fam, suffix := name, ""
		if x.types[cur] == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if strings.TrimSuffix(name, s) == cur && strings.HasSuffix(name, s) {
					fam, suffix = cur, s
				}
			}
		}
		if fam != cur || x.types[cur] == "" || !helps[cur] {
			return nil, fail("sample outside its family (or before its HELP and TYPE)")
		}
		key := seriesKey(name, labels)
		if _, dup := x.series[key]; dup {
			return nil, fail("series appears twice")
		}
		x.series[key] = value
		x.labels[name] = append(x.labels[name], labels)
		switch x.types[cur] {
		case "counter":
			if value < 0 || math.IsNaN(value) {
				return nil, fail("counter %v", value)
			}
		case "histogram":
			rest := map[string]string{}
			for k, v := range labels {
				if k != "le" {
					rest[k] = v
				}
			}
			hk := seriesKey(cur, rest)
			h := hists[hk]
			if h == nil {
				h = &histState{lastLE: math.Inf(-1)}
				hists[hk] = h
			}
			if err := h.add(suffix, labels, value); err != nil {
				return nil, fail("%v", err)
			}
		}
	}
	for k, h := range hists {
		if !h.hasInf || !h.hasSum || !h.hasCount || h.infCount != h.count {
			return nil, fmt.Errorf("histogram %s incomplete: +Inf %v (%v), sum %v, count %v (%v)", k, h.hasInf, h.infCount, h.hasSum, h.hasCount, h.count)
		}
	}
	for name := range x.types {
		if x.labels[name] == nil && x.types[name] != "histogram" {
			return nil, fmt.Errorf("family %s has no sample", name)
		}
	}
	return x, nil
}

func (h *histState) add(suffix string, labels map[string]string, v float64) error {
	switch suffix {
	case "_bucket":
		if h.hasSum || h.hasCount || h.hasInf {
			return fmt.Errorf("bucket after +Inf, _sum or _count")
		}
		s, ok := labels["le"]
		if !ok {
			return fmt.Errorf("bucket without le")
		}
		le, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("le %q", s)
		}
		if le <= h.lastLE || v < h.lastCum {
			return fmt.Errorf("buckets not ascending or not cumulative")
		}
		h.lastLE, h.lastCum = le, v
		if math.IsInf(le, 1) {
			h.hasInf, h.infCount = true, v
		}
	case "_sum":
		if _, ok := labels["le"]; ok {
			return fmt.Errorf("le on _sum")
		}
		h.hasSum = true
	case "_count":
		if _, ok := labels["le"]; ok {
			return fmt.Errorf("le on _count")
		}
		h.hasCount, h.count = true, v
	default:
		return fmt.Errorf("histogram sample without _bucket, _sum or _count")
	}
	return nil
}

// parseSample parses `name{a="x",b="y"} value`.
func parseSample(line string) (name string, labels map[string]string, v float64, err error) {
	labels = map[string]string{}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, 0, fmt.Errorf("no value")
	}
	name, rest := line[:i], line[i:]
	if !metricName.MatchString(name) {
		return "", nil, 0, fmt.Errorf("bad metric name %q", name)
	}
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for !strings.HasPrefix(rest, "}") {
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return "", nil, 0, fmt.Errorf("bad label")
			}
			ln := rest[:eq]
			if !labelName.MatchString(ln) || strings.HasPrefix(ln, "__") {
				return "", nil, 0, fmt.Errorf("bad label name %q", ln)
			}
			if _, dup := labels[ln]; dup {
				return "", nil, 0, fmt.Errorf("label %s twice", ln)
			}
			rest = rest[eq+2:]
			var val strings.Builder
			for {
				if rest == "" {
					return "", nil, 0, fmt.Errorf("unterminated label value")
				}
				c := rest[0]
				if c == '"' {
					rest = rest[1:]
					break
				}
				if c == '\n' {
					return "", nil, 0, fmt.Errorf("raw line feed in label value")
				}
				if c == '\\' {
					if len(rest) < 2 {
						return "", nil, 0, fmt.Errorf("bad escape")
					}
					switch rest[1] {
					case '\\':
						val.WriteByte('\\')
					case '"':
						val.WriteByte('"')
					case 'n':
						val.WriteByte('\n')
					default:
						return "", nil, 0, fmt.Errorf("bad escape \\%c", rest[1])
					}
					rest = rest[2:]
					continue
				}
				val.WriteByte(c)
				rest = rest[1:]
			}
			labels[ln] = val.String()
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
				if strings.HasPrefix(rest, "}") {
					return "", nil, 0, fmt.Errorf("trailing comma")
				}
			} else if !strings.HasPrefix(rest, "}") {
				return "", nil, 0, fmt.Errorf("label not followed by , or }")
			}
		}
		rest = rest[1:]
	}
	if !strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "  ") {
		return "", nil, 0, fmt.Errorf("want one space before the value")
	}
	f := strings.Split(rest[1:], " ")
	if len(f) > 2 {
		return "", nil, 0, fmt.Errorf("extra fields")
	}
	switch f[0] {
	case "+Inf", "-Inf", "NaN":
	default:
		if strings.ContainsAny(f[0], "iInN_") {
			return "", nil, 0, fmt.Errorf("value %q", f[0])
		}
	}
	v, err = strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", nil, 0, fmt.Errorf("value %q", f[0])
	}
	if len(f) == 2 {
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			return "", nil, 0, fmt.Errorf("timestamp %q", f[1])
		}
	}
	return name, labels, v, nil
}

// badEscape describes a bad escape sequence in HELP text (quote false) or
// a label value, or returns "".
func badEscape(s string, quote bool) string {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if i+1 == len(s) {
			return "trailing backslash"
		}
		switch s[i+1] {
		case '\\', 'n':
		case '"':
			if !quote {
				return `\" in HELP`
			}
		default:
			return fmt.Sprintf(`bad escape \%c`, s[i+1])
		}
		i++
	}
	return ""
}
