package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/router/certs"
	"github.com/keystone-app/keystone/internal/router/routertest"
)

// pebble is Let's Encrypt's test CA, run from the Go tool dependency.
type pebble struct {
	dir     string // directory URL
	mgmt    string // management base URL
	caRoots []byte // roots of pebble's own HTTPS
	cmd     *exec.Cmd
	exited  chan struct{}
}

func startPebble(t *testing.T) *pebble {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("find pebble module: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	port, mport := freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mport),
		"certificate":             filepath.Join(mod, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(mod, "test/certs/localhost/key.pem"),
		"httpPort":                freePort(t), "tlsPort": freePort(t),
		"retryAfter": map[string]int{"authz": 1, "order": 1},
		"profiles":   map[string]any{"default": map[string]any{"description": "default", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(cfg)
	file := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	roots, err := os.ReadFile(filepath.Join(mod, "test/certs/pebble.minica.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p := &pebble{dir: fmt.Sprintf("https://localhost:%d/dir", port), mgmt: fmt.Sprintf("https://localhost:%d", mport), caRoots: roots, exited: make(chan struct{})}
	// `go tool -n` builds the pinned tool and prints its path: running the
	// binary itself lets the test kill pebble, not just the go command.
	bin, err := exec.Command("go", "tool", "-n", "pebble").Output()
	if err != nil {
		t.Fatalf("build pebble: %v", err)
	}
	p.cmd = exec.Command(strings.TrimSpace(string(bin)), "-config", file)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.stop)
	c := p.client()
	routertest.Eventually(t, 60*time.Second, "pebble answering", func() bool {
		resp, err := c.Get(p.dir)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return p
}

func (p *pebble) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caRoots)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// issuingRoot is the root pebble signs certificates under (new at each start).
func (p *pebble) issuingRoot(t *testing.T) *x509.CertPool {
	resp, err := p.client().Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %q", b)
	}
	return pool
}

func (p *pebble) stop() {
	p.cmd.Process.Kill()
	<-p.exited
}

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
	p := startPebble(t)
	store := t.TempDir()
	routed := map[string]bool{"app.apps.test": true}
	newManager := func() *certs.Manager {
		m, err := certs.New(certs.Options{
			Dir: store, DirectoryURL: p.dir, Email: "ops@example.com", CARoots: p.caRoots,
			Allowed: func(h string) bool { return routed[h] },
		}, func() []string { return []string{"app.apps.test"} })
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := newManager()
	addr := serveTLS(t, m)
	root := p.issuingRoot(t)

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
	p.stop()
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

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
