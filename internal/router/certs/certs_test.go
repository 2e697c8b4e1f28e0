package certs_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/router/certs"
	"github.com/keystone-app/keystone/internal/router/routertest"
)

// serveTLS runs an HTTPS server with m's configuration and returns its address.
func serveTLS(t *testing.T, m *certs.Manager) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "app") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestCertificatesFromPebble: a routed host gets a certificate chaining to
// Pebble's root; an unrouted SNI gets none (no order is placed for it); after
// a restart with the CA gone, the stored certificate is served.
func TestCertificatesFromPebble(t *testing.T) {
	p := routertest.StartPebble(t)
	store := t.TempDir()
	routed := map[string]bool{"app.apps.test": true}
	newManager := func() *certs.Manager {
		m, err := certs.New(certs.Options{
			Dir: store, DirectoryURL: p.DirectoryURL, Email: "ops@example.com", CARoots: p.CARoots,
			Allowed: func(h string) bool { return routed[h] },
		}, func() []string { return []string{"app.apps.test"} })
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := newManager()
	addr := serveTLS(t, m)
	root := p.IssuingRoot(t)

	conn, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{ServerName: "app.apps.test", RootCAs: root})
	if err != nil {
		t.Fatalf("handshake for the routed host: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if err := leaf.VerifyHostname("app.apps.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{ServerName: "evil.apps.test", InsecureSkipVerify: true}); err == nil {
		t.Fatal("an unrouted SNI got a certificate")
	}
	if _, err := os.Stat(filepath.Join(store, "evil.apps.test")); err == nil {
		t.Fatal("a certificate was stored for an unrouted host")
	}
	info := m.Certificates()
	if len(info) != 1 || info[0].Host != "app.apps.test" || !strings.Contains(info[0].Issuer, "Pebble") ||
		time.Until(info[0].NotAfter) < 24*time.Hour || info[0].LastError != "" {
		t.Fatalf("certificates = %+v", info)
	}

	// HTTP: challenges are answered by the manager, the rest redirects to https.
	plain := httptest.NewServer(m.HTTPHandler(nil))
	defer plain.Close()
	nc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{"/": http.StatusFound, "/.well-known/acme-challenge/unknown-token": http.StatusNotFound} {
		req, _ := http.NewRequest(http.MethodGet, plain.URL+path, nil)
		req.Host = "app.apps.test"
		resp, err := nc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || want == http.StatusFound && resp.Header.Get("Location") != "https://app.apps.test/" {
			t.Errorf("GET %s = %d %q, want %d", path, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}

	// Restart with the CA stopped: only the store can answer.
	p.Stop()
	addr2 := serveTLS(t, newManager())
	conn, err = tls.DialWithDialer(dialer, "tcp", addr2, &tls.Config{ServerName: "app.apps.test", RootCAs: root})
	if err != nil {
		t.Fatalf("after restart without the CA: %v", err)
	}
	if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(leaf) {
		t.Fatal("after restart: a different certificate")
	}
	conn.Close()
}

// dialer bounds every handshake, so a stuck issuance fails the test instead of hanging it.
var dialer = &net.Dialer{Timeout: 30 * time.Second}
