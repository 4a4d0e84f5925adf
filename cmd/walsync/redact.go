package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/walsync/walsync/internal/redact"
)

// redactHandler is a slog.Handler that passes every record to h with its
// message and attribute values redacted by [redact.Text]: URLs without
// user information or secret query values, secret name=value pairs
// hidden. Errors and Stringers are redacted as their text.
type redactHandler struct{ h slog.Handler }

func (r redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, redact.Text(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return redactHandler{r.h.WithAttrs(red)}
}

func (r redactHandler) WithGroup(name string) slog.Handler { return redactHandler{r.h.WithGroup(name)} }

// redactAttr redacts the value of a, groups included.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redact.Text(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, redact.Text(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, redact.Text(x.String()))
		case []byte:
			return slog.String(a.Key, redact.Text(string(x)))
		default:
			// Structs, maps and slices: kept as they are unless their
			// text needs redacting, then replaced by it.
			s := fmt.Sprintf("%+v", x)
			if red := redact.Text(s); red != s {
				return slog.String(a.Key, red)
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// redactWriter passes each write to w with [redact.Text] applied. It is
// for human-readable progress and error lines, each written whole.
type redactWriter struct{ w io.Writer }

func (r redactWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, redact.Text(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
