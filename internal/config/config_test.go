package config_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/config"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Addr", c.Addr, ":8080"},
		{"PublicURL", c.PublicURL.String(), "http://localhost:8080"},
		{"Env", c.Env, "development"},
		{"GitHubAPIURL", c.GitHubAPIURL, "https://api.github.com/"},
		{"GitHubWebURL", c.GitHubWebURL, "https://github.com"},
		{"DataDir", c.DataDir, "./.keystone"},
		{"PortRange", c.PortRange, config.PortRange{First: 9000, Last: 9999}},
		{"AppHost", c.AppHost, "localhost"},
		{"Workers", c.Workers, 4},
		{"dev key", c.UsesDevEncryptionKey(), true},
		{"app configured", c.GitHubAppConfigured(), false},
	}
	for _, chk := range checks {
		if chk.got != chk.want {
			t.Errorf("%s = %v, want %v", chk.name, chk.got, chk.want)
		}
	}
}

// TestInvalidValuesNameTheVariable: every bad value is an error naming its
// variable, never a silent default.
func TestInvalidValuesNameTheVariable(t *testing.T) {
	cases := []struct{ name, value string }{
		{"KEYSTONE_ADDR", "8080"},
		{"KEYSTONE_PUBLIC_URL", "localhost:8080"},
		{"KEYSTONE_PUBLIC_URL", "ftp://example.com"},
		{"KEYSTONE_ENV", "staging"},
		{"KEYSTONE_ALLOW_HTTP", "yes please"},
		{"KEYSTONE_GITHUB_APP_ID", "twelve"},
		{"KEYSTONE_GITHUB_APP_ID", "-3"},
		{"KEYSTONE_GITHUB_API_URL", "not a url"},
		{"KEYSTONE_GITHUB_WEB_URL", "/relative"},
		{"KEYSTONE_ENCRYPTION_KEYS", "k1"},
		{"KEYSTONE_ENCRYPTION_KEYS", "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 16))},
		{"KEYSTONE_ENCRYPTION_KEYS", "k1:not-base64!"},
		{"KEYSTONE_PORT_RANGE", "9000"},
		{"KEYSTONE_PORT_RANGE", "9999-9000"},
		{"KEYSTONE_PORT_RANGE", "0-10"},
		{"KEYSTONE_PORT_RANGE", "60000-70000"},
		{"KEYSTONE_WORKERS", "0"},
		{"KEYSTONE_WORKERS", "four"},
		{"KEYSTONE_GITHUB_PRIVATE_KEY", "not a pem"},
		{"KEYSTONE_GITHUB_PRIVATE_KEY_FILE", "/no/such/key.pem"},
		{"KEYSTONE_TRUSTED_PROXIES", "10.0.0.1, proxy.internal"},
		{"KEYSTONE_TRUSTED_PROXIES", "10.0.0.0/33"},
		{"KEYSTONE_APPS_DOMAIN", "not a domain"},
		{"KEYSTONE_APPS_DOMAIN", "localhost"},
		{"KEYSTONE_APPS_DOMAIN", strings.Repeat("a", 64) + ".example.com"},
		{"KEYSTONE_ALLOWED_DOMAINS", "*.example.com, bad_name.example.com"},
		{"KEYSTONE_ALLOWED_DOMAINS", "*"},
		{"KEYSTONE_PROXY_HTTP_ADDR", "80"},
		{"KEYSTONE_PROXY_HTTPS_ADDR", ":99999"},
		{"KEYSTONE_PROXY_ADMIN", "127.0.0.1:9090"},
		{"KEYSTONE_PROXY_ADMIN", "tcp://127.0.0.1:9090"},
		{"KEYSTONE_PROXY_ADMIN", "unix://"},
		{"KEYSTONE_TLS", "on"},
		{"KEYSTONE_ACME_DIRECTORY", "acme.example.com/dir"},
		{"KEYSTONE_ACME_EMAIL", "ops at example.com"},
		{"KEYSTONE_ACME_CA_ROOTS", "/no/such/roots.pem"},
		{"KEYSTONE_ACME_CA_ROOTS", "config_test.go"},
		{"KEYSTONE_MAX_MEMORY", "lots"},
		{"KEYSTONE_MAX_MEMORY", "1m"},
		{"KEYSTONE_MAX_CPUS", "0"},
		{"KEYSTONE_MAX_CPUS", "two"},
	}
	for _, c := range cases {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			_, err := config.Load(env(map[string]string{c.name: c.value}))
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want *config.Error", err)
			}
			if len(cerr.Problems) != 1 || !strings.HasPrefix(cerr.Problems[0], c.name+":") {
				t.Fatalf("problems = %q, want one starting with %s:", cerr.Problems, c.name)
			}
		})
	}
}

func TestProductionListsEveryProblem(t *testing.T) {
	_, err := config.Load(env(map[string]string{"KEYSTONE_ENV": "production"}))
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v", err)
	}
	// No webhook secret is no problem without an App in the environment:
	// Keystone then serves the first-run setup (SPEC §15).
	want := []string{"KEYSTONE_ENCRYPTION_KEYS:", "KEYSTONE_PUBLIC_URL:", "KEYSTONE_METRICS_TOKEN:"}
	if len(cerr.Problems) != len(want) {
		t.Fatalf("problems = %q, want %d", cerr.Problems, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(cerr.Problems[i], w) {
			t.Errorf("problem %d = %q, want it to start with %s", i, cerr.Problems[i], w)
		}
	}
}

func TestProductionRefusesTheDevKey(t *testing.T) {
	_, err := config.Load(env(map[string]string{
		"KEYSTONE_ENV": "production", "KEYSTONE_GITHUB_WEBHOOK_SECRET": "s", "KEYSTONE_ALLOW_HTTP": "1",
		"KEYSTONE_ENCRYPTION_KEYS": "dev:" + base64.StdEncoding.EncodeToString(make([]byte, 32)),
	}))
	if err == nil || !strings.Contains(err.Error(), `development key id "dev"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestProductionRefusesUnusableKeys: a blank list or the development key
// under another id is as unsafe as no key.
func TestProductionRefusesUnusableKeys(t *testing.T) {
	for value, want := range map[string]string{
		"   ": "KEYSTONE_ENCRYPTION_KEYS: required in production",
		"k2:" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + ",prod:" + base64.StdEncoding.EncodeToString([]byte("keystone-development-only-key-32")): `key "prod" is the published development key`,
	} {
		_, err := config.Load(env(map[string]string{
			"KEYSTONE_ENV": "production", "KEYSTONE_GITHUB_WEBHOOK_SECRET": "s", "KEYSTONE_ALLOW_HTTP": "1",
			"KEYSTONE_ENCRYPTION_KEYS": value,
		}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("KEYSTONE_ENCRYPTION_KEYS=%q: err = %v, want %q", value, err, want)
		}
	}
}

func TestProductionAcceptsSafeConfig(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, vars := range []map[string]string{
		{"KEYSTONE_PUBLIC_URL": "https://keystone.example.com"},
		{"KEYSTONE_PUBLIC_URL": "http://10.0.0.5:8080", "KEYSTONE_ALLOW_HTTP": "1"},
	} {
		vars["KEYSTONE_ENV"] = "production"
		vars["KEYSTONE_GITHUB_WEBHOOK_SECRET"] = "s3cret"
		vars["KEYSTONE_ENCRYPTION_KEYS"] = "k2:" + key + ",k1:" + key
		vars["KEYSTONE_METRICS_TOKEN"] = "0123456789abcdef"
		c, err := config.Load(env(vars))
		if err != nil {
			t.Fatalf("%v: %v", vars, err)
		}
		if len(c.EncryptionKeys) != 2 || c.EncryptionKeys[0].ID != "k2" {
			t.Fatalf("keys = %v, want k2 first", c.EncryptionKeys)
		}
	}
}

func TestPrivateKeyFromFileAndText(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemText := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	file := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(file, pemText, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, vars := range map[string]map[string]string{
		"file": {"KEYSTONE_GITHUB_APP_ID": "42", "KEYSTONE_GITHUB_PRIVATE_KEY_FILE": file},
		"text": {"KEYSTONE_GITHUB_APP_ID": "42", "KEYSTONE_GITHUB_PRIVATE_KEY": string(pemText)},
	} {
		c, err := config.Load(env(vars))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !c.GitHubAppConfigured() || c.GitHubAppID != 42 {
			t.Fatalf("%s: app not configured", name)
		}
	}
	_, err = config.Load(env(map[string]string{"KEYSTONE_GITHUB_APP_ID": "42"}))
	if err == nil || !strings.Contains(err.Error(), "KEYSTONE_GITHUB_PRIVATE_KEY_FILE: required") {
		t.Fatalf("app id without key: %v", err)
	}
}

// TestSecretsStayOutOfErrorsAndLogs: a bad key's text and the webhook secret
// never appear in what Keystone prints.
func TestSecretsStayOutOfErrorsAndLogs(t *testing.T) {
	secretish := "-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END RSA PRIVATE KEY-----"
	_, err := config.Load(env(map[string]string{"KEYSTONE_GITHUB_PRIVATE_KEY": secretish}))
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("err = %v", err)
	}
	c, err := config.Load(env(map[string]string{"KEYSTONE_GITHUB_WEBHOOK_SECRET": "hook-secret-value"}))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.LogValue().String(); strings.Contains(s, "hook-secret-value") {
		t.Fatalf("log value shows the secret: %s", s)
	}
}

func TestTrustedProxies(t *testing.T) {
	cases := []struct{ value, want string }{
		{"", "[]"},
		{"127.0.0.1", "[127.0.0.1/32]"},
		{" 10.1.2.3/8 , ::1, fd00::/8", "[10.0.0.0/8 ::1/128 fd00::/8]"},
	}
	for _, c := range cases {
		t.Run(c.value, func(t *testing.T) {
			cfg, err := config.Load(env(map[string]string{"KEYSTONE_TRUSTED_PROXIES": c.value}))
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(cfg.TrustedProxies); got != c.want {
				t.Fatalf("TrustedProxies = %s, want %s", got, c.want)
			}
		})
	}
}

func TestRouterDefaults(t *testing.T) {
	c, err := config.Load(env(map[string]string{"KEYSTONE_DATA_DIR": "/var/lib/keystone"}))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Router
	checks := []struct {
		name      string
		got, want any
	}{
		{"DomainMode", r.DomainMode(), false},
		{"AllowedDomains", fmt.Sprint(r.AllowedDomains), "[]"},
		{"HTTPAddr", r.HTTPAddr, ":80"},
		{"HTTPSAddr", r.HTTPSAddr, ":443"},
		{"AdminSocket", r.AdminSocket, "/var/lib/keystone/proxy.sock"},
		{"TLS", r.TLS, "acme"},
		{"ACMEDirectory", r.ACMEDirectory, "https://acme-v02.api.letsencrypt.org/directory"},
	}
	for _, chk := range checks {
		if chk.got != chk.want {
			t.Errorf("%s = %v, want %v", chk.name, chk.got, chk.want)
		}
	}
}

func TestRouterDomainMode(t *testing.T) {
	c, err := config.Load(env(map[string]string{
		"KEYSTONE_APPS_DOMAIN":   "Apps.Example.COM.",
		"KEYSTONE_PUBLIC_URL":    "https://keystone.example.com",
		"KEYSTONE_PROXY_ADMIN":   "unix:///run/keystone/admin.sock",
		"KEYSTONE_ACME_EMAIL":    "ops@example.com",
		"KEYSTONE_TLS":           "off",
		"KEYSTONE_ACME_CA_ROOTS": writeRoot(t),
	}))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Router
	if r.AppsDomain != "apps.example.com" || fmt.Sprint(r.AllowedDomains) != "[*.apps.example.com]" ||
		r.AdminSocket != "/run/keystone/admin.sock" || r.TLS != "off" || len(r.ACMECARoots) == 0 {
		t.Fatalf("router = %+v", r)
	}
	allowed := map[string]bool{
		"web-shop.apps.example.com": true, "WEB.Apps.example.com": true, "a.b.apps.example.com": true,
		"apps.example.com": false, "evilapps.example.com": false, "keystone.example.com": false, "": false,
	}
	for host, want := range allowed {
		if got := r.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestRouterAllowedDomainsList(t *testing.T) {
	c, err := config.Load(env(map[string]string{
		"KEYSTONE_APPS_DOMAIN":     "apps.example.com",
		"KEYSTONE_ALLOWED_DOMAINS": "*.apps.example.com, shop.example.org",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{"x.apps.example.com": true, "shop.example.org": true, "a.shop.example.org": false} {
		if got := c.Router.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestPublicURLUnderAppsDomainRefused: an app on Keystone's own domain would
// receive its session cookie.
func TestPublicURLUnderAppsDomainRefused(t *testing.T) {
	for _, public := range []string{"https://keystone.apps.example.com", "https://apps.example.com", "http://APPS.example.com:8080"} {
		_, err := config.Load(env(map[string]string{"KEYSTONE_APPS_DOMAIN": "apps.example.com", "KEYSTONE_PUBLIC_URL": public}))
		var cerr *config.Error
		if !errors.As(err, &cerr) || len(cerr.Problems) != 1 || !strings.HasPrefix(cerr.Problems[0], "KEYSTONE_PUBLIC_URL:") ||
			!strings.Contains(cerr.Problems[0], "KEYSTONE_APPS_DOMAIN") {
			t.Errorf("%s: err = %v, want KEYSTONE_PUBLIC_URL refused", public, err)
		}
	}
}

func writeRoot(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestProductionNeedsAMetricsToken: without a token /metrics trusts loopback
// clients, and a build's `ADD http://127.0.0.1…` or an app on the host
// network is a loopback client. Production refuses to start without one, and
// a token must be long enough not to be guessed (issue 12 item 6).
func TestProductionNeedsAMetricsToken(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	safe := func(token string) map[string]string {
		return map[string]string{"KEYSTONE_ENV": "production", "KEYSTONE_GITHUB_WEBHOOK_SECRET": "s3cret",
			"KEYSTONE_ENCRYPTION_KEYS": "k1:" + key, "KEYSTONE_PUBLIC_URL": "https://keystone.example.com",
			"KEYSTONE_METRICS_TOKEN": token}
	}
	for token, want := range map[string]string{
		"":                  "KEYSTONE_METRICS_TOKEN: required in production",
		"short":             "KEYSTONE_METRICS_TOKEN: at least 16 characters",
		"0123456789abcdef!": "",
	} {
		_, err := config.Load(env(safe(token)))
		switch {
		case want == "" && err != nil:
			t.Errorf("token %q: %v", token, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("token %q: err = %v, want %q", token, err, want)
		}
	}
	if _, err := config.Load(env(map[string]string{"KEYSTONE_METRICS_TOKEN": "short"})); err == nil {
		t.Error("a short metrics token is accepted in development")
	}
}
