package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/walsync/walsync/internal/metrics"
	"github.com/walsync/walsync/internal/redact"
	"github.com/walsync/walsync/replicate"
)

// DefaultMetricsAddr is the address `walsync status` asks by default, and
// the one the docs suggest for `watch --metrics-addr`.
const DefaultMetricsAddr = "127.0.0.1:9752"

// Defaults of the serve flags.
const (
	defaultReadyLag          = time.Minute
	defaultHeartbeatInterval = time.Minute
)

// serveOptions are the flags of `walsync watch` for monitoring: the
// metrics and health endpoints and the heartbeat.
type serveOptions struct {
	addr              string
	maxDBs            int
	readyLag          time.Duration
	heartbeatURL      string
	heartbeatInterval time.Duration
}

func (o *serveOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.addr, "metrics-addr", "", "serve /metrics (Prometheus), /healthz, /readyz and /status on this address, e.g. "+DefaultMetricsAddr+" (default: off)")
	f.IntVar(&o.maxDBs, "metrics-max-dbs", metrics.DefaultMaxDBs, "databases with metric series of their own (the first in name order); the others are folded into one series")
	f.DurationVar(&o.readyLag, "ready-lag", defaultReadyLag, "/readyz fails while a database's changes wait longer than this, its syncs have failed for longer, or the target does not take its uploads")
	f.StringVar(&o.heartbeatURL, "heartbeat-url", "", "GET this URL every --heartbeat-interval while /readyz would succeed (for a dead-man switch; never logged)")
	f.DurationVar(&o.heartbeatInterval, "heartbeat-interval", defaultHeartbeatInterval, "interval of the --heartbeat-url requests")
}

func (o *serveOptions) validate() error {
	switch {
	case o.maxDBs < 0:
		return errors.New("watch: --metrics-max-dbs must not be negative")
	case o.readyLag <= 0:
		return errors.New("watch: --ready-lag must be positive")
	case o.heartbeatInterval <= 0:
		return errors.New("watch: --heartbeat-interval must be positive")
	}
	if o.heartbeatURL != "" {
		// The URL may hold a secret: the error does not repeat it.
		u, err := url.Parse(o.heartbeatURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("watch: --heartbeat-url: want an http:// or https:// URL")
		}
	}
	return nil
}

// server serves the monitoring endpoints of a running watch and pings the
// heartbeat URL. It owns its goroutines: close stops them.
type server struct {
	r     *replicate.Replicator
	opts  serveOptions
	log   *slog.Logger
	httpd *httpd // nil: no --metrics-addr

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startServing starts what the flags ask for: the endpoints on o.addr
// (logged as "serving metrics" with the address bound, for a port 0) and
// the heartbeat.
func startServing(ctx context.Context, o *serveOptions, r *replicate.Replicator, log *slog.Logger) (*server, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &server{r: r, opts: *o, log: log, cancel: cancel}
	if o.addr != "" {
		ln, err := net.Listen("tcp", o.addr)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("watch: --metrics-addr: %w", err)
		}
		// Requests are answered until close, during the final flush too.
		s.httpd = newHTTPD(ln, map[string]endpoint{
			"/metrics": s.metrics,
			"/healthz": func(context.Context) (int, string, []byte) { return http.StatusOK, textPlain, []byte("ok\n") },
			"/readyz":  s.ready,
			"/status":  s.status,
		})
		s.wg.Go(s.httpd.serve)
		log.Info("serving metrics", "addr", ln.Addr().String())
	}
	if o.heartbeatURL != "" {
		s.wg.Go(func() { s.heartbeat(ctx) })
	}
	return s, nil
}

// close stops the endpoints and the heartbeat.
func (s *server) close() {
	s.cancel()
	if s.httpd != nil {
		s.httpd.close(5 * time.Second)
	}
	s.wg.Wait()
}

// requestTimeout bounds the work of one request to the endpoints.
const requestTimeout = 10 * time.Second

const textPlain = "text/plain; charset=utf-8"

func (s *server) metrics(ctx context.Context) (int, string, []byte) {
	dbs, err := s.r.Status(ctx)
	if err != nil {
		return http.StatusServiceUnavailable, textPlain, []byte(err.Error() + "\n")
	}
	var buf bytes.Buffer
	metrics.Write(&buf, s.r.Metrics(), dbs, metrics.Options{MaxDBs: s.opts.maxDBs})
	return http.StatusOK, metrics.ContentType, buf.Bytes()
}

func (s *server) ready(ctx context.Context) (int, string, []byte) {
	bad, n, err := s.readiness(ctx)
	switch {
	case err != nil:
		return http.StatusServiceUnavailable, textPlain, []byte("not ready: " + err.Error() + "\n")
	case len(bad) > 0:
		return http.StatusServiceUnavailable, textPlain, []byte(readyReport(bad, n) + "\n")
	}
	return http.StatusOK, textPlain, fmt.Appendf(nil, "ready: %d databases\n", n)
}

func (s *server) status(ctx context.Context) (int, string, []byte) {
	dbs, err := s.r.Status(ctx)
	if err != nil {
		return http.StatusServiceUnavailable, textPlain, []byte(err.Error() + "\n")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, d := range dbs {
		enc.Encode(newStatusJSON(d))
	}
	return http.StatusOK, "application/x-ndjson", buf.Bytes()
}

// readiness returns what keeps the process from being ready (nil: ready)
// and the number of databases.
func (s *server) readiness(ctx context.Context) ([]string, int, error) {
	dbs, err := s.r.Status(ctx)
	if err != nil {
		return nil, 0, err
	}
	return notReady(dbs, s.opts.readyLag, time.Now()), len(dbs), nil
}

// notReady returns, for each database that keeps the process from being
// ready, a line naming it and why: the target does not take its uploads,
// a change waits longer than bound, or its syncs have failed for longer
// than bound.
func notReady(dbs []replicate.DBStatus, bound time.Duration, now time.Time) []string {
	var out []string
	for _, d := range dbs {
		switch {
		case d.Degraded:
			out = append(out, fmt.Sprintf("%s: the target does not take its uploads since %s (lag %s): %s", d.Name,
				d.FailingSince.UTC().Format(time.RFC3339), d.Lag.Round(time.Second), shortError(d.LastError)))
		case d.Lag > bound:
			out = append(out, fmt.Sprintf("%s: lag %s", d.Name, d.Lag.Round(time.Second)))
		case d.LastError != "" && now.Sub(d.FailingSince) > bound:
			out = append(out, fmt.Sprintf("%s: syncs failing since %s: %s", d.Name,
				d.FailingSince.UTC().Format(time.RFC3339), shortError(d.LastError)))
		}
	}
	return out
}

// readyReport is the body of a failed /readyz: the first few offending
// databases, one a line.
func readyReport(bad []string, total int) string {
	const shown = 5
	var b strings.Builder
	fmt.Fprintf(&b, "not ready: %d of %d databases\n", len(bad), total)
	for i, line := range bad {
		if i == shown {
			fmt.Fprintf(&b, "and %d more\n", len(bad)-shown)
			break
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// shortError returns an error's text on one line, redacted, at most 200
// bytes.
func shortError(s string) string {
	s = redact.Text(strings.Join(strings.Fields(s), " "))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// statusJSON is one database of /status and `walsync status --json`. The
// keys are stable.
type statusJSON struct {
	Name           string     `json:"name"`
	Path           string     `json:"path"`
	State          string     `json:"state"`
	ReplicatedTXID uint64     `json:"replicated_txid"`
	LagSeconds     float64    `json:"lag_seconds"`
	LastUpload     *time.Time `json:"last_upload"` // null: none since walsync started
	Pinned         bool       `json:"pinned"`
	Degraded       bool       `json:"degraded"`
	LastError      string     `json:"last_error"`    // "": the last sync succeeded
	FailingSince   *time.Time `json:"failing_since"` // null: the last sync succeeded
	WALBytes       int64      `json:"wal_bytes"`
}

func newStatusJSON(d replicate.DBStatus) statusJSON {
	j := statusJSON{Name: d.Name, Path: d.Path, State: d.State, ReplicatedTXID: uint64(d.ReplicatedTXID),
		LagSeconds: d.Lag.Seconds(), Pinned: d.Pinned, Degraded: d.Degraded, LastError: shortError(d.LastError),
		WALBytes: d.WALBytes}
	if !d.LastUpload.IsZero() {
		t := d.LastUpload.UTC()
		j.LastUpload = &t
	}
	if !d.FailingSince.IsZero() {
		t := d.FailingSince.UTC()
		j.FailingSince = &t
	}
	return j
}
