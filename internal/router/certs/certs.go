// Package certs obtains, stores and renews the router's certificates over
// ACME (SPEC §13), with golang.org/x/crypto/acme/autocert: it answers
// TLS-ALPN-01 on the HTTPS listener and HTTP-01 on the plain one, renews
// before expiry (30 days by default), caches under a directory so a restart
// asks the CA for nothing, and — through the Allowed decision — issues only
// for host names in the route table, never for whatever SNI a client sends.
// autocert is enough here: it is kept with Go's own x/crypto, Keystone
// already depends on it, and certmagic's extras (on-demand issuance,
// distributed storage, OCSP stapling) are things the router must not do or
// does not need.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Options configure New.
type Options struct {
	// Dir is where account key and certificates are stored.
	Dir string
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// Email is the account contact; may be empty.
	Email string
	// CARoots, when set, is PEM of the roots trusted for the ACME server
	// itself (a private CA, Pebble in tests); else the system's.
	CARoots []byte
	// Allowed reports whether host may have a certificate: the router's
	// "is it routed" check.
	Allowed func(host string) bool
	Logger  *slog.Logger
	// Now is the clock for expiry figures; time.Now when nil.
	Now func() time.Time
}

// Manager hands out certificates for routed host names.
type Manager struct {
	ac      *autocert.Manager
	dir     string
	log     *slog.Logger
	now     func() time.Time
	mu      sync.Mutex
	errs    map[string]lastError
	hosts   func() []string
	allowed func(string) bool
}

type lastError struct {
	msg string
	at  time.Time
}

// Info is what the router knows of one host's certificate.
type Info struct {
	Host        string    `json:"host"`
	Issuer      string    `json:"issuer,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// New returns a Manager; hosts lists the names the router serves, for Certificates.
func New(opts Options, hosts func() []string) (*Manager, error) {
	if opts.Allowed == nil {
		return nil, errors.New("certs: no Allowed decision")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("certificate directory: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	httpClient := http.DefaultClient
	if len(opts.CARoots) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(opts.CARoots) {
			return nil, errors.New("certs: CA roots hold no certificate")
		}
		httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	m := &Manager{dir: opts.Dir, log: log, now: opts.Now, errs: map[string]lastError{}, hosts: hosts, allowed: opts.Allowed}
	if m.now == nil {
		m.now = time.Now
	}
	m.ac = &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		Cache:  autocert.DirCache(opts.Dir),
		HostPolicy: func(_ context.Context, host string) error {
			if !opts.Allowed(host) {
				return fmt.Errorf("no route for host %q: no certificate is asked for it", host)
			}
			return nil
		},
		Email:  opts.Email,
		Client: &acme.Client{DirectoryURL: opts.DirectoryURL, HTTPClient: httpClient, UserAgent: "keystone-proxy"},
	}
	return m, nil
}

// TLSConfig is the HTTPS listener's configuration: certificates on demand for
// routed names only, and the acme-tls/1 protocol for TLS-ALPN-01.
func (m *Manager) TLSConfig() *tls.Config {
	cfg := m.ac.TLSConfig()
	get := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert, err := get(hello)
		host := strings.ToLower(hello.ServerName)
		// Only routed names are remembered: any client can send any SNI.
		if err != nil && m.allowed(host) {
			m.mu.Lock()
			m.errs[host] = lastError{msg: err.Error(), at: m.now()}
			m.mu.Unlock()
			m.log.Warn("router: certificate", "host", host, "err", err)
		} else if err == nil {
			m.mu.Lock()
			delete(m.errs, host)
			m.mu.Unlock()
		}
		return cert, err
	}
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}

// HTTPHandler answers HTTP-01 challenges and sends everything else to
// fallback (nil: a redirect to https for GET and HEAD, 400 otherwise).
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler { return m.ac.HTTPHandler(fallback) }

// Certificates reports every routed host's certificate from the store, and
// the last error met obtaining it.
func (m *Manager) Certificates() []Info {
	m.mu.Lock()
	errs := make(map[string]lastError, len(m.errs))
	for h, e := range m.errs {
		errs[h] = e
	}
	m.mu.Unlock()
	var out []Info
	for _, h := range m.hosts() {
		info := Info{Host: h}
		if leaf := m.stored(h); leaf != nil {
			info.Issuer = leaf.Issuer.CommonName
			info.NotAfter = leaf.NotAfter
		}
		if e, ok := errs[h]; ok {
			info.LastError, info.LastErrorAt = e.msg, e.at
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// stored reads host's leaf certificate from autocert's cache (ECDSA key
// first, as autocert prefers it; then RSA).
func (m *Manager) stored(host string) *x509.Certificate {
	for _, name := range []string{host, host + "+rsa"} {
		b, err := os.ReadFile(filepath.Join(m.dir, name))
		if err != nil {
			continue
		}
		for {
			var block *pem.Block
			block, b = pem.Decode(b)
			if block == nil {
				break
			}
			if block.Type == "CERTIFICATE" {
				if c, err := x509.ParseCertificate(block.Bytes); err == nil {
					return c
				}
				break
			}
		}
	}
	return nil
}
