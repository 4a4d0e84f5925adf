package s3_test

import (
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync/s3"
)

// TestNew_CABundle reaches the test server through a TLS proxy whose
// certificate only AWS_CA_BUNDLE vouches for: the SDK can add the bundle
// only to the kind of HTTP client New builds.
func TestNew_CABundle(t *testing.T) {
	c := newClient(t, "p")
	u, err := url.Parse(c.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(bundle, cert, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := s3.Config{Bucket: c.bucket, Prefix: "p", Endpoint: srv.URL, MaxAttempts: 1}
	without, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := without.Check(t.Context()); err == nil {
		t.Fatal("Check through TLS without the CA bundle succeeded")
	}

	t.Setenv("AWS_CA_BUNDLE", bundle)
	with, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New with AWS_CA_BUNDLE: %v", err)
	}
	if err := with.Check(t.Context()); err != nil {
		t.Fatalf("Check with AWS_CA_BUNDLE: %v", err)
	}
	put(t, with, "k", "over TLS")
}
