// Package config reads Keystone's configuration from the environment (SPEC §2).
//
// Load is the only constructor: it applies the documented defaults, parses every
// variable, and returns a *Error listing every problem it found, each naming the
// variable. An unparsable value is always an error, never a silent default.
package config

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Environments Keystone knows. Production refuses unsafe configuration.
const (
	EnvDevelopment = "development"
	EnvProduction  = "production"
)

// DevEncryptionKeyID names the fixed key used when KEYSTONE_ENCRYPTION_KEYS is
// unset outside production. Anything encrypted under it is readable by anyone
// with this source code, which is why production refuses it.
const DevEncryptionKeyID = "dev"

// devEncryptionKey is 32 bytes of a published constant: fine on a laptop only.
var devEncryptionKey = []byte("keystone-development-only-key-32")

// Config is Keystone's whole configuration. The zero value is not useful: use Load.
type Config struct {
	// DatabaseURL is the PostgreSQL URL (DATABASE_URL). Required by commands that
	// touch the database; `make run` provides a local one.
	DatabaseURL string
	// MigrateDatabaseURL (KEYSTONE_MIGRATE_DATABASE_URL) connects as the role
	// owning Keystone's tables: Keystone migrates as it at start-up and gives
	// DATABASE_URL's role its rights, with the audit trail append-only. ""
	// means DATABASE_URL's role migrates (and then can rewrite the trail).
	MigrateDatabaseURL string
	// Addr is the listen address for webhooks, pages and probes (KEYSTONE_ADDR).
	Addr string
	// PublicURL is the base of every link written to GitHub (KEYSTONE_PUBLIC_URL).
	PublicURL *url.URL
	// Env is development or production (KEYSTONE_ENV).
	Env string
	// AllowHTTP lets production run behind a plain-http public URL (KEYSTONE_ALLOW_HTTP=1).
	AllowHTTP bool

	// GitHubAppID is the App's id (KEYSTONE_GITHUB_APP_ID); 0 when unset.
	GitHubAppID int64
	// GitHubPrivateKeyPEM is the App's PEM private key, read from
	// KEYSTONE_GITHUB_PRIVATE_KEY_FILE or taken from KEYSTONE_GITHUB_PRIVATE_KEY.
	GitHubPrivateKeyPEM []byte
	// WebhookSecret checks X-Hub-Signature-256 (KEYSTONE_GITHUB_WEBHOOK_SECRET).
	// Empty means no webhook is accepted.
	WebhookSecret []byte
	// GitHubAPIURL is the REST base URL, always ending in "/" (KEYSTONE_GITHUB_API_URL).
	GitHubAPIURL string
	// GitHubWebURL is the web base URL for sign-in and links, without a trailing "/"
	// (KEYSTONE_GITHUB_WEB_URL).
	GitHubWebURL string
	// OAuthClientID and OAuthClientSecret enable "Sign in with GitHub" when both are set.
	OAuthClientID     string
	OAuthClientSecret string

	// EncryptionKeys encrypt secrets at rest: the first encrypts, all decrypt
	// (KEYSTONE_ENCRYPTION_KEYS).
	EncryptionKeys []EncryptionKey
	// DataDir holds source caches and other local state (KEYSTONE_DATA_DIR).
	DataDir string
	// PortRange is the inclusive range of host ports handed to apps (KEYSTONE_PORT_RANGE).
	PortRange PortRange
	// AppHost is the host name used in app URLs (KEYSTONE_APP_HOST).
	AppHost string
	// Workers is how many jobs run at once (KEYSTONE_WORKERS).
	Workers int
	// MaxPreviews caps the open pull-request previews
	// (KEYSTONE_MAX_PREVIEWS, default 10; 0: no previews at all).
	MaxPreviews int
	// PreviewSweepSeconds is how often previews of pull requests closed
	// while their event was missed are looked for
	// (KEYSTONE_PREVIEW_SWEEP_SECONDS, default 300).
	PreviewSweepSeconds int
	// MetricsToken, when set, is required as a bearer token on /metrics
	// (KEYSTONE_METRICS_TOKEN); when empty only loopback clients may read it.
	MetricsToken string
	// TrustedProxies are the addresses (single IPs or CIDRs) whose
	// X-Forwarded-For and X-Real-IP headers name the client
	// (KEYSTONE_TRUSTED_PROXIES). Empty: no header is believed, and the
	// client is the connection's peer.
	TrustedProxies []netip.Prefix

	// Router holds the variables of `keystone proxy` and of the way
	// `keystone serve` reaches it (SPEC §2, §13).
	Router Router

	// MaxMemory (bytes) and MaxCPUs cap what .keystone.yml may ask for,
	// builds included (KEYSTONE_MAX_MEMORY, KEYSTONE_MAX_CPUS).
	MaxMemory int64
	MaxCPUs   float64
}

// TLS modes of the router (KEYSTONE_TLS).
const (
	TLSACME = "acme"
	TLSOff  = "off"
)

// LetsEncryptDirectory is the default ACME directory: Let's Encrypt production.
const LetsEncryptDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// Router is the router's configuration (SPEC §13).
type Router struct {
	// AppsDomain is the domain apps are served under (KEYSTONE_APPS_DOMAIN),
	// lower case; empty means IP mode: each app on its own host port.
	AppsDomain string
	// AllowedDomains are host names and "*.suffix" patterns that `domains:`
	// may claim (KEYSTONE_ALLOWED_DOMAINS), lower case.
	AllowedDomains []string
	// HTTPAddr and HTTPSAddr are the router's listeners in domain mode
	// (KEYSTONE_PROXY_HTTP_ADDR, KEYSTONE_PROXY_HTTPS_ADDR).
	HTTPAddr  string
	HTTPSAddr string
	// AdminSocket is the path of the Unix socket of the router's admin API
	// (KEYSTONE_PROXY_ADMIN, unix://PATH). There is no TCP admin port.
	AdminSocket string
	// TLS is TLSACME or TLSOff (KEYSTONE_TLS).
	TLS string
	// ACMEDirectory is the ACME directory URL (KEYSTONE_ACME_DIRECTORY).
	ACMEDirectory string
	// ACMEEmail is the ACME account contact (KEYSTONE_ACME_EMAIL); may be empty.
	ACMEEmail string
	// ACMECARoots is PEM of extra roots trusted for the ACME server
	// (read from the file KEYSTONE_ACME_CA_ROOTS names); nil when unset.
	ACMECARoots []byte
}

// DomainMode reports whether apps are served by host name.
func (r Router) DomainMode() bool { return r.AppsDomain != "" }

// HostAllowed reports whether host (lower case, no port) matches an entry of
// AllowedDomains: equal to a plain name, or strictly under a "*.suffix".
func (r Router) HostAllowed(host string) bool {
	host = strings.ToLower(host)
	for _, p := range r.AllowedDomains {
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) && len(host) > len(suffix)+1 {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}

// EncryptionKey is one entry of KEYSTONE_ENCRYPTION_KEYS.
type EncryptionKey struct {
	ID  string
	Key []byte // 32 bytes, AES-256
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ First, Last int }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Production reports whether Keystone runs with KEYSTONE_ENV=production.
func (c Config) Production() bool { return c.Env == EnvProduction }

// UsesDevEncryptionKey reports whether the published development key is in the list.
func (c Config) UsesDevEncryptionKey() bool {
	for _, k := range c.EncryptionKeys {
		if k.ID == DevEncryptionKeyID {
			return true
		}
	}
	return false
}

// GitHubAppConfigured reports whether the App id and private key are both set.
func (c Config) GitHubAppConfigured() bool {
	return c.GitHubAppID != 0 && len(c.GitHubPrivateKeyPEM) > 0
}

// LogValue keeps secrets out of logs: only their presence is shown.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("public_url", c.PublicURL.String()),
		slog.String("env", c.Env),
		slog.Bool("migrate_database_url", c.MigrateDatabaseURL != ""),
		slog.Int64("github_app_id", c.GitHubAppID),
		slog.Bool("github_private_key", len(c.GitHubPrivateKeyPEM) > 0),
		slog.Bool("webhook_secret", len(c.WebhookSecret) > 0),
		slog.String("github_api_url", c.GitHubAPIURL),
		slog.Int("encryption_keys", len(c.EncryptionKeys)),
		slog.String("data_dir", c.DataDir),
		slog.String("port_range", c.PortRange.String()),
		slog.String("app_host", c.AppHost),
		slog.Int("workers", c.Workers),
		slog.Int("trusted_proxies", len(c.TrustedProxies)),
		slog.String("apps_domain", c.Router.AppsDomain),
		slog.String("proxy_admin", c.Router.AdminSocket),
		slog.String("tls", c.Router.TLS),
		slog.String("acme_directory", c.Router.ACMEDirectory),
	)
}

// Error lists every problem found in the environment, one per line, each
// starting with the variable's name.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "configuration: " + e.Problems[0]
	}
	return "configuration has " + strconv.Itoa(len(e.Problems)) + " problems:\n  " +
		strings.Join(e.Problems, "\n  ")
}

// FromOS loads the configuration from the process environment.
func FromOS() (Config, error) { return Load(os.LookupEnv) }

// Load reads the configuration through lookup (os.LookupEnv in production code).
func Load(lookup func(string) (string, bool)) (Config, error) {
	r := reader{lookup: lookup}
	c := Config{
		DatabaseURL:         r.str("DATABASE_URL", ""),
		MigrateDatabaseURL:  r.str("KEYSTONE_MIGRATE_DATABASE_URL", ""),
		Addr:                r.addr("KEYSTONE_ADDR", ":8080"),
		PublicURL:           r.url("KEYSTONE_PUBLIC_URL", "http://localhost:8080"),
		Env:                 r.oneOf("KEYSTONE_ENV", EnvDevelopment, EnvDevelopment, EnvProduction),
		AllowHTTP:           r.flag("KEYSTONE_ALLOW_HTTP"),
		GitHubAppID:         r.int64("KEYSTONE_GITHUB_APP_ID"),
		WebhookSecret:       []byte(r.str("KEYSTONE_GITHUB_WEBHOOK_SECRET", "")),
		GitHubAPIURL:        withSlash(r.url("KEYSTONE_GITHUB_API_URL", "https://api.github.com/")),
		GitHubWebURL:        strings.TrimSuffix(r.url("KEYSTONE_GITHUB_WEB_URL", "https://github.com").String(), "/"),
		OAuthClientID:       r.str("KEYSTONE_GITHUB_OAUTH_CLIENT_ID", ""),
		OAuthClientSecret:   r.str("KEYSTONE_GITHUB_OAUTH_CLIENT_SECRET", ""),
		DataDir:             r.str("KEYSTONE_DATA_DIR", "./.keystone"),
		PortRange:           r.portRange("KEYSTONE_PORT_RANGE", "9000-9999"),
		Workers:             r.intIn("KEYSTONE_WORKERS", 4, 1, 256),
		MaxPreviews:         r.intIn("KEYSTONE_MAX_PREVIEWS", 10, 0, 1000),
		PreviewSweepSeconds: r.intIn("KEYSTONE_PREVIEW_SWEEP_SECONDS", 300, 1, 86400),
		MetricsToken:        r.str("KEYSTONE_METRICS_TOKEN", ""),
		TrustedProxies:      r.prefixes("KEYSTONE_TRUSTED_PROXIES"),
		MaxMemory:           r.memory("KEYSTONE_MAX_MEMORY", "4g"),
		MaxCPUs:             r.cpus("KEYSTONE_MAX_CPUS", "2"),
	}
	c.GitHubPrivateKeyPEM = r.privateKey()
	if c.GitHubAppID != 0 && len(c.GitHubPrivateKeyPEM) == 0 {
		r.problem("KEYSTONE_GITHUB_PRIVATE_KEY_FILE: required when KEYSTONE_GITHUB_APP_ID is set")
	}
	if c.GitHubAppID == 0 && len(c.GitHubPrivateKeyPEM) > 0 {
		r.problem("KEYSTONE_GITHUB_APP_ID: required when a private key is set")
	}
	if (c.OAuthClientID == "") != (c.OAuthClientSecret == "") {
		r.problem("KEYSTONE_GITHUB_OAUTH_CLIENT_SECRET: KEYSTONE_GITHUB_OAUTH_CLIENT_ID and _SECRET must be set together")
	}
	c.AppHost = r.str("KEYSTONE_APP_HOST", c.PublicURL.Hostname())
	if c.AppHost == "" {
		r.problem("KEYSTONE_APP_HOST: empty, and KEYSTONE_PUBLIC_URL has no host to default to")
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < MinMetricsTokenLen {
		r.problem("KEYSTONE_METRICS_TOKEN: at least %d characters (generate one with `openssl rand -hex 24`)", MinMetricsTokenLen)
	}
	c.EncryptionKeys = r.encryptionKeys(c.Env)
	c.Router = r.router(c.DataDir)
	if d := c.Router.AppsDomain; d != "" {
		if h := strings.ToLower(c.PublicURL.Hostname()); h == d || strings.HasSuffix(h, "."+d) {
			r.problem("KEYSTONE_PUBLIC_URL: host %q is under KEYSTONE_APPS_DOMAIN %q; apps would receive Keystone's cookies, so serve Keystone on another domain", h, d)
		}
	}
	if c.Production() {
		c.checkProduction(&r)
	}
	if len(r.problems) > 0 {
		return Config{}, &Error{Problems: r.problems}
	}
	return c, nil
}

// checkProduction refuses what is unsafe outside a laptop (SPEC §2, §11).
func (c Config) checkProduction(r *reader) {
	// Without an App in the environment, Keystone starts to serve the
	// first-run setup (SPEC §15), which checks the stored secret itself.
	if len(c.WebhookSecret) == 0 && c.GitHubAppConfigured() {
		r.problem("KEYSTONE_GITHUB_WEBHOOK_SECRET: required in production")
	}
	// Set but blank counts as missing: it would leave no key at all.
	if _, set := r.raw("KEYSTONE_ENCRYPTION_KEYS"); !set {
		r.problem("KEYSTONE_ENCRYPTION_KEYS: required in production (generate one with `keystone keys generate`)")
	} else if c.UsesDevEncryptionKey() {
		r.problem("KEYSTONE_ENCRYPTION_KEYS: the development key id \"dev\" is not allowed in production")
	} else if id, ok := c.devKeyUnderAnotherID(); ok {
		r.problem("KEYSTONE_ENCRYPTION_KEYS: key %q is the published development key; generate one with `keystone keys generate`", id)
	}
	if c.PublicURL.Scheme != "https" && !c.AllowHTTP {
		r.problem("KEYSTONE_PUBLIC_URL: plain http in production; use https or set KEYSTONE_ALLOW_HTTP=1")
	}
	// Without a token /metrics trusts loopback clients, and a build (ADD
	// http://127.0.0.1…) or an app on the host network is one.
	if c.MetricsToken == "" {
		r.problem("KEYSTONE_METRICS_TOKEN: required in production (at least %d characters; `openssl rand -hex 24`)", MinMetricsTokenLen)
	}
}

// MinMetricsTokenLen is the shortest KEYSTONE_METRICS_TOKEN accepted.
const MinMetricsTokenLen = 16

// devKeyUnderAnotherID finds the development key's bytes renamed.
func (c Config) devKeyUnderAnotherID() (string, bool) {
	for _, k := range c.EncryptionKeys {
		if string(k.Key) == string(devEncryptionKey) {
			return k.ID, true
		}
	}
	return "", false
}

// reader collects problems while parsing variables, so that one Load reports all.
type reader struct {
	lookup   func(string) (string, bool)
	problems []string
}

func (r *reader) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// raw returns the trimmed value and whether it is set and non-empty.
func (r *reader) raw(name string) (string, bool) {
	v, ok := r.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (r *reader) str(name, def string) string {
	if v, ok := r.raw(name); ok {
		return v
	}
	return def
}

func (r *reader) flag(name string) bool {
	v, ok := r.raw(name)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.problem("%s: %q is not a boolean (use 1 or 0)", name, v)
	}
	return b
}

func (r *reader) oneOf(name, def string, allowed ...string) string {
	v := r.str(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.problem("%s: %q is not one of %s", name, v, strings.Join(allowed, ", "))
	return def
}

func (r *reader) int64(name string) int64 {
	v, ok := r.raw(name)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		r.problem("%s: %q is not a positive whole number", name, v)
		return 0
	}
	return n
}

func (r *reader) intIn(name string, def, lo, hi int) int {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.problem("%s: %q is not a whole number from %d to %d", name, v, lo, hi)
		return def
	}
	return n
}

func (r *reader) addr(name, def string) string {
	v := r.str(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil {
		r.problem("%s: %q is not a listen address like :8080 (%v)", name, v, err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		r.problem("%s: %q has no valid port", name, v)
	}
	return v
}

func (r *reader) url(name, def string) *url.URL {
	v := r.str(name, def)
	u, err := url.Parse(v)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return u
	}
	r.problem("%s: %q is not an absolute http(s) URL", name, v)
	u, _ = url.Parse(def)
	return u
}

// prefixes reads a comma-separated list of IP addresses and CIDRs; a single
// address becomes the prefix holding only itself.
func (r *reader) prefixes(name string) []netip.Prefix {
	v, ok := r.raw(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	var out []netip.Prefix
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(item); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		} else {
			r.problem("%s: %q is neither an IP address nor a CIDR (e.g. 10.0.0.1 or 10.0.0.0/8)", name, item)
		}
	}
	return out
}

var memoryPattern = regexp.MustCompile(`^(\d+)([kmgt]?)b?$`)

// memory reads a size like 512m or 4g, at least 6m (Docker's minimum).
func (r *reader) memory(name, def string) int64 {
	v := r.str(name, def)
	if m := memoryPattern.FindStringSubmatch(strings.ToLower(strings.TrimSpace(v))); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 64)
		unit := map[string]int64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m[2]]
		if err == nil && n > 0 && n <= (1<<62)/unit && n*unit >= 6<<20 {
			return n * unit
		}
	}
	r.problem("%s: %q is not a memory size like 512m or 4g (at least 6m)", name, v)
	return 4 << 30
}

// cpus reads a number of CPUs like 2 or 0.5.
func (r *reader) cpus(name, def string) float64 {
	v := r.str(name, def)
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(n) || n < 0.01 || n > 256 {
		r.problem("%s: %q is not a number of CPUs from 0.01 to 256 (e.g. 2 or 0.5)", name, v)
		return 2
	}
	return n
}

var portRangePattern = regexp.MustCompile(`^(\d{1,5})-(\d{1,5})$`)

func (r *reader) portRange(name, def string) PortRange {
	v := r.str(name, def)
	m := portRangePattern.FindStringSubmatch(v)
	if m != nil {
		first, _ := strconv.Atoi(m[1])
		last, _ := strconv.Atoi(m[2])
		if first >= 1 && first <= last && last <= 65535 {
			return PortRange{First: first, Last: last}
		}
	}
	r.problem("%s: %q is not a port range like 9000-9999 (1 to 65535, first <= last)", name, v)
	return PortRange{First: 9000, Last: 9999}
}

func (r *reader) privateKey() []byte {
	file, fromFile := r.raw("KEYSTONE_GITHUB_PRIVATE_KEY_FILE")
	text, fromText := r.lookup("KEYSTONE_GITHUB_PRIVATE_KEY")
	fromText = fromText && strings.TrimSpace(text) != ""
	name := "KEYSTONE_GITHUB_PRIVATE_KEY"
	var pemBytes []byte
	switch {
	case fromFile && fromText:
		r.problem("KEYSTONE_GITHUB_PRIVATE_KEY_FILE: set either it or KEYSTONE_GITHUB_PRIVATE_KEY, not both")
		return nil
	case fromFile:
		name = "KEYSTONE_GITHUB_PRIVATE_KEY_FILE"
		b, err := os.ReadFile(file)
		if err != nil {
			r.problem("%s: cannot read %q: %v", name, file, unwrapPathError(err))
			return nil
		}
		pemBytes = b
	case fromText:
		pemBytes = []byte(text)
	default:
		return nil
	}
	// The key's text never goes into a message: only what is wrong with it.
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		r.problem("%s: not a PEM private key", name)
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		if _, err8 := x509.ParsePKCS8PrivateKey(block.Bytes); err8 != nil {
			r.problem("%s: PEM block %q is not an RSA private key", name, block.Type)
			return nil
		}
	}
	return pemBytes
}

func (r *reader) encryptionKeys(env string) []EncryptionKey {
	v, ok := r.raw("KEYSTONE_ENCRYPTION_KEYS")
	if !ok {
		if env == EnvProduction {
			return nil // checkProduction reports it
		}
		return []EncryptionKey{{ID: DevEncryptionKeyID, Key: devEncryptionKey}}
	}
	var keys []EncryptionKey
	seen := map[string]bool{}
	for i, entry := range strings.Split(v, ",") {
		id, b64, found := strings.Cut(strings.TrimSpace(entry), ":")
		key, err := base64.StdEncoding.DecodeString(b64)
		switch {
		case !found || !keyIDPattern.MatchString(id):
			r.problem("KEYSTONE_ENCRYPTION_KEYS: entry %d is not KEYID:BASE64 (key id: letters, digits, - and _)", i+1)
			continue
		case err != nil || len(key) != 32:
			r.problem("KEYSTONE_ENCRYPTION_KEYS: key %q is not standard base64 of 32 bytes", id)
			continue
		case seen[id]:
			r.problem("KEYSTONE_ENCRYPTION_KEYS: key id %q appears twice", id)
			continue
		}
		seen[id] = true
		keys = append(keys, EncryptionKey{ID: id, Key: key})
	}
	return keys
}

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func withSlash(u *url.URL) string {
	s := u.String()
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
