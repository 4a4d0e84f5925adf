package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a YAML node tree, collecting errors and warnings that name
// the file, line and field.
type decoder struct {
	file   string
	expand bool
	lookup func(string) (string, bool)
	errs   Errors
	warns  []Warning
	lines  map[string]int // field → line of its key
	visits int            // mapping entries walked, aliases and merges included
}

// maxVisits bounds the mapping entries walked: aliases and merge keys can
// make a small file expand exponentially.
const maxVisits = 1 << 20

// errorf records an error at node n (nil: no line) for field.
func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line(n), Field: field, Err: fmt.Errorf(format, args...)})
}

// warnf records a warning at node n for field.
func (d *decoder) warnf(n *yaml.Node, field, format string, args ...any) {
	d.warns = append(d.warns, Warning{File: d.file, Line: line(n), Field: field, Msg: fmt.Sprintf(format, args...)})
}

func line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an explicit or empty null.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// pair is one key and value of a mapping.
type pair struct {
	key     string
	keyNode *yaml.Node
	val     *yaml.Node
	field   string // the full field name: prefix.key
}

// pairs returns the entries of the mapping n (field names it), merge keys
// ("<<") resolved, explicit keys overriding merged ones. A duplicate key or
// a key that is not a string is an error. A null is an empty mapping.
func (d *decoder) pairs(n *yaml.Node, field string) []pair {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, field, "want a mapping (key: value lines), got %s", kind(n))
		return nil
	}
	if d.visits += len(n.Content) / 2; d.visits > maxVisits {
		if d.visits-len(n.Content)/2 <= maxVisits {
			d.errorf(n, field, "too many aliases or merge keys")
		}
		return nil
	}
	var out, merged []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, field, "a key must be a string, got %s", kind(k))
			continue
		}
		if k.Value == "<<" && k.Tag == "!!merge" {
			merged = append(merged, d.merge(v, field)...)
			continue
		}
		f := join(field, k.Value)
		if prev, dup := seen[k.Value]; dup {
			d.errorf(k, f, "given twice (first at line %d)", prev)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, pair{key: k.Value, keyNode: k, val: v, field: f})
	}
	for _, p := range out { // after the merged keys' lines
		d.lines[p.field] = p.keyNode.Line
	}
	for _, p := range merged {
		if _, ok := seen[p.key]; !ok {
			seen[p.key] = p.keyNode.Line
			out = append(out, p)
		}
	}
	return out
}

// merge returns the entries a merge key brings: one mapping or a sequence
// of mappings, earlier ones winning.
func (d *decoder) merge(v *yaml.Node, field string) []pair {
	v = resolve(v)
	if v != nil && v.Kind == yaml.SequenceNode {
		var out []pair
		seen := map[string]bool{}
		for _, m := range v.Content {
			for _, p := range d.pairs(m, field) {
				if !seen[p.key] {
					seen[p.key] = true
					out = append(out, p)
				}
			}
		}
		return out
	}
	return d.pairs(v, field)
}

// items returns the entries of the sequence n. A null is an empty list.
func (d *decoder) items(n *yaml.Node, field string) []*yaml.Node {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "want a list (lines starting with -), got %s", kind(n))
		return nil
	}
	return n.Content
}

// str returns the string value of the scalar n, with environment variables
// expanded if enabled; ok is false for a null or an error.
func (d *decoder) str(n *yaml.Node, field string) (s string, ok bool) {
	n = resolve(n)
	if isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, field, "want a single value, got %s", kind(n))
		return "", false
	}
	if !d.expand {
		return n.Value, true
	}
	s, err := Expand(n.Value, d.lookup)
	if err != nil {
		d.errorf(n, field, "%v", err)
		return "", false
	}
	return s, true
}

// duration returns the duration in the scalar n, nil if null or invalid.
// min is the smallest value accepted; what names it in errors.
func (d *decoder) duration(n *yaml.Node, field string, min time.Duration, what string) *time.Duration {
	s, ok := d.str(n, field)
	if !ok {
		return nil
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.errorf(n, field, "%q is not a duration (use a unit: 500ms, 1s, 5m, 24h)", s)
		return nil
	}
	if v < min {
		d.errorf(n, field, "%s must be %s", s, what)
		return nil
	}
	return &v
}

// positive returns the positive integer in the scalar n.
func (d *decoder) positive(n *yaml.Node, field string) *int {
	s, ok := d.str(n, field)
	if !ok {
		return nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v <= 0 {
		d.errorf(n, field, "%q is not a positive integer", s)
		return nil
	}
	return &v
}

// boolean returns the boolean in the scalar n.
func (d *decoder) boolean(n *yaml.Node, field string) *bool {
	s, ok := d.str(n, field)
	if !ok {
		return nil
	}
	v, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		d.errorf(n, field, "%q is not true or false", s)
		return nil
	}
	return &v
}

// oneOf returns the value of the scalar n if it is one of want.
func (d *decoder) oneOf(n *yaml.Node, field string, want ...string) string {
	s, ok := d.str(n, field)
	if !ok {
		return ""
	}
	for _, w := range want {
		if strings.EqualFold(s, w) {
			return w
		}
	}
	d.errorf(n, field, "%q: want %s", s, strings.Join(want, ", "))
	return ""
}

func kind(n *yaml.Node) string {
	switch resolve(n).Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "something else"
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// Expand replaces $NAME and ${NAME} in s with the values lookup gives
// (NAME: a letter or _, then letters, digits or _), and $$ with $. A $
// followed by anything else stays as it is. An unset variable, an unclosed
// ${ or a bad name inside ${} is an error naming it.
func Expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		var name string
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
			continue
		case next == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New("unclosed ${ (write $$ for a literal $)")
			}
			name = s[i+2 : i+2+end]
			if !validName(name) {
				return "", fmt.Errorf("${%s}: not a variable name (write $$ for a literal $)", name)
			}
			i += 2 + end
		case nameStart(next):
			j := i + 2
			for j < len(s) && nameChar(s[j]) {
				j++
			}
			name = s[i+1 : j]
			i = j - 1
		default:
			b.WriteByte(c)
			continue
		}
		v, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("$%s is not set (write $$ for a literal $, or pass --no-expand-env)", name)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func nameStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func nameChar(c byte) bool  { return nameStart(c) || '0' <= c && c <= '9' }

func validName(s string) bool {
	if s == "" || !nameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !nameChar(s[i]) {
			return false
		}
	}
	return true
}
