package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/walsync/walsync/internal/redact"
)

// heartbeatTimeout bounds one heartbeat request.
const heartbeatTimeout = 10 * time.Second

// heartbeat GETs the heartbeat URL at once and then every interval, each
// time every database is ready (as /readyz says), until ctx is done: a
// dead-man switch behind the URL raises an alarm when the pings stop. The
// URL is never logged: a heartbeat URL usually holds a secret in its path.
func (s *server) heartbeat(ctx context.Context) {
	client := &http.Client{Timeout: heartbeatTimeout}
	label := heartbeatLabel(s.opts.heartbeatURL)
	t := time.NewTicker(s.opts.heartbeatInterval)
	defer t.Stop()
	failures, paused := 0, false
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		bad, _, err := s.readiness(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil || len(bad) > 0:
			if !paused {
				reason := "status unavailable"
				if len(bad) > 0 {
					reason = shortError(bad[0])
				}
				s.log.Warn("heartbeat paused: not every database is ready", "url", label, "not_ready", len(bad), "first", reason)
				paused = true
			}
		default:
			if paused {
				s.log.Info("heartbeat resumed: every database is ready", "url", label)
				paused = false
			}
			if err := ping(ctx, client, s.opts.heartbeatURL); err != nil && ctx.Err() == nil {
				failures++
				if failures == 1 || failures%10 == 0 {
					s.log.Warn("heartbeat failed", "url", label, "error", err, "failures", failures)
				}
			} else if err == nil && failures > 0 {
				s.log.Info("heartbeat delivered again", "url", label, "after_failures", failures)
				failures = 0
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ping sends one GET to u; an answer other than 2xx is an error. The error
// never holds the URL.
func ping(ctx context.Context, client *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return errors.New("invalid heartbeat URL")
	}
	req.Header.Set("User-Agent", "walsync")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL it quotes
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answer %s", resp.Status)
	}
	return nil
}

// heartbeatLabel names a heartbeat URL in logs: its scheme and host only,
// since services such as healthchecks.io put the secret in the path.
func heartbeatLabel(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redact.Mark
	}
	label := redact.URL(u.Scheme + "://" + u.Host)
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		label += "/" + redact.Mark
	}
	return label
}
