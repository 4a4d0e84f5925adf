package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestRedactHandler: every part of a record that can carry a URL is
// redacted, in both log formats, at every level.
func TestRedactHandler(t *testing.T) {
	const secret = "CANARYhandler"
	url := "s3://AKIA:" + secret + "@bucket/p?X-Amz-Signature=" + secret
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			g := &globals{logLevel: "debug", logFormat: format, stderr: &buf}
			log, err := g.logger()
			if err != nil {
				t.Fatal(err)
			}
			log = log.With("target", url).WithGroup("g")
			err = fmt.Errorf("put: %w", errors.New(`Put "http://h/b/k?X-Amz-Credential=`+secret+`": EOF`))
			log.Debug("open "+url, "err", err, "url", url, slog.Group("nested", "u", url),
				"stringer", stringer(url), "any", struct{ U string }{url}, "n", 3)
			log.Error("failed", "err", err)
			if got := buf.String(); strings.Contains(got, secret) || strings.Contains(got, "AKIA") {
				t.Fatalf("log holds the secret:\n%s", got)
			}
			if got, want := strings.Count(buf.String(), "REDACTED"), 9; got < want {
				t.Fatalf("%d REDACTED marks, want at least %d:\n%s", got, want, buf.String())
			}
		})
	}
}

type stringer string

func (s stringer) String() string { return string(s) }
