package routertest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pebble is Let's Encrypt's test CA, run from the Go tool dependency
// (go.mod's tool line) with every challenge taken as valid.
type Pebble struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// CARoots is PEM of the roots of Pebble's own HTTPS (KEYSTONE_ACME_CA_ROOTS).
	CARoots []byte
	mgmt    string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartPebble runs Pebble on free loopback ports until the test ends.
func StartPebble(t testing.TB) *Pebble {
	t.Helper()
	// `go mod download` fetches the module's files when this machine's
	// module cache lacks them (`go list -m` would only name an empty Dir).
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("download the pebble module: %v", err)
	}
	var module struct{ Dir string }
	if err := json.Unmarshal(out, &module); err != nil || module.Dir == "" {
		t.Fatalf("download the pebble module: no directory in %q (%v)", out, err)
	}
	mod := module.Dir
	port, mport := FreePort(t), FreePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mport),
		"certificate":             filepath.Join(mod, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(mod, "test/certs/localhost/key.pem"),
		"httpPort":                FreePort(t), "tlsPort": FreePort(t),
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
	p := &Pebble{DirectoryURL: fmt.Sprintf("https://localhost:%d/dir", port), mgmt: fmt.Sprintf("https://localhost:%d", mport), CARoots: roots, exited: make(chan struct{})}
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
	t.Cleanup(p.Stop)
	c := p.client()
	Eventually(t, 60*time.Second, "pebble answering", func() bool {
		resp, err := c.Get(p.DirectoryURL)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return p
}

func (p *Pebble) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CARoots)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// IssuingRoot is the root Pebble signs certificates under (new at each start).
func (p *Pebble) IssuingRoot(t testing.TB) *x509.CertPool {
	t.Helper()
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

// Stop kills Pebble (idempotent).
func (p *Pebble) Stop() {
	p.cmd.Process.Kill()
	<-p.exited
}

// FreePort returns a loopback TCP port free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
