package router_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
)

// TestProxyProcessHTTPS runs the real binary with KEYSTONE_TLS=acme against
// Pebble: the routed host is served over HTTPS with a certificate chaining to
// Pebble's root and X-Forwarded-Proto https; plain HTTP redirects; the admin
// API reports the certificate; after the CA is gone, a restarted proxy serves
// the stored certificate (no new order could have been placed).
func TestProxyProcessHTTPS(t *testing.T) {
	pebble := routertest.StartPebble(t)
	dir := t.TempDir()
	roots := filepath.Join(t.TempDir(), "pebble-roots.pem")
	if err := os.WriteFile(roots, pebble.CARoots, 0o600); err != nil {
		t.Fatal(err)
	}
	httpPort, httpsPort := freePort(t), freePort(t)
	env := []string{
		"KEYSTONE_TLS=acme", "KEYSTONE_ACME_DIRECTORY=" + pebble.DirectoryURL, "KEYSTONE_ACME_CA_ROOTS=" + roots,
		"KEYSTONE_ACME_EMAIL=ops@example.com", fmt.Sprintf("KEYSTONE_PROXY_HTTPS_ADDR=127.0.0.1:%d", httpsPort),
	}
	p := startProxy(t, dir, httpPort, env...)
	ctx := context.Background()
	app := routertest.NewBackend(t, "app")
	if _, err := p.admin.Put(ctx, "web", routerapi.RouteBody{Hosts: []string{"web.apps.test"}, Target: app.Addr()}); err != nil {
		t.Fatal(err)
	}
	root := pebble.IssuingRoot(t)
	httpsGet := func() (string, *tls.ConnectionState) {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: root, ServerName: "web.apps.test"},
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", httpsPort))
			},
		}}
		resp, err := c.Get("https://web.apps.test/headers")
		if err != nil {
			t.Fatalf("https: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.TLS
	}
	body, state := httpsGet()
	if !strings.Contains(body, "proto=https") || !strings.Contains(body, "xfh=web.apps.test") {
		t.Fatalf("app saw %q, want X-Forwarded-Proto https", body)
	}
	leaf := state.PeerCertificates[0]

	// Hostile SNI: a name with no route, an IP, garbage bytes, a name too
	// long, a wildcard, none at all. No handshake completes (no certificate
	// is shown or ordered for a name the router does not serve), and the
	// proxy goes on serving the routed host.
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 70) + ".apps.test"
	hostileSNIs := []string{"", "other.apps.test", "127.0.0.1", "web.apps.test.evil", "*.apps.test", "a\x00b.apps.test",
		"web apps test", "wéb.apps.test", long, "web.apps.test:443", "../../etc/passwd"}
	for _, sni := range hostileSNIs {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", httpsPort),
			&tls.Config{ServerName: sni, InsecureSkipVerify: true}) // any certificate shown at all is the failure
		if err == nil {
			names := conn.ConnectionState().PeerCertificates[0].DNSNames
			conn.Close()
			t.Fatalf("SNI %q: the handshake completed with a certificate for %v", sni, names)
		}
	}
	if body, _ := httpsGet(); !strings.Contains(body, "proto=https") {
		t.Fatalf("after hostile SNIs the routed host answers %q", body)
	}
	// Each refused handshake is counted (and summarised in the log).
	if m, err := p.admin.Metrics(ctx); err != nil || !strings.Contains(m, fmt.Sprintf(`keystone_router_refused_total{reason="tls_handshake"} %d`, len(hostileSNIs))) {
		t.Fatalf("refused handshakes not counted (%v):\n%s", err, m)
	}

	// Plain HTTP: a routed host is redirected to HTTPS, an unknown one gets 404.
	nc := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for host, want := range map[string]struct {
		code     int
		location string
	}{
		"web.apps.test":   {http.StatusPermanentRedirect, "https://web.apps.test/x?y=1"},
		"other.apps.test": {http.StatusNotFound, ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/x?y=1", httpPort), nil)
		req.Host = host
		resp, err := nc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want.code || resp.Header.Get("Location") != want.location {
			t.Fatalf("http %s: %d %q, want %d %q", host, resp.StatusCode, resp.Header.Get("Location"), want.code, want.location)
		}
	}

	list, err := p.admin.Certificates(ctx)
	if err != nil || len(list) != 1 || list[0].Host != "web.apps.test" || !strings.Contains(list[0].Issuer, "Pebble") || list[0].NotAfter.IsZero() {
		t.Fatalf("certificates = %+v, %v", list, err)
	}
	m, err := p.admin.Metrics(ctx)
	if err != nil || !strings.Contains(m, `keystone_router_certificate_expiry_timestamp_seconds{host="web.apps.test"`) {
		t.Fatalf("metrics lack the certificate expiry: %v\n%s", err, m)
	}

	pebble.Stop()
	p.kill()
	p = startProxy(t, dir, httpPort, env...)
	if _, state := httpsGet(); !state.PeerCertificates[0].Equal(leaf) {
		t.Fatal("after restart: a different certificate")
	}
}
