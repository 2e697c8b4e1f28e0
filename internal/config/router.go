package config

import (
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// hostnamePattern is a DNS name of letters, digits and hyphens, at least two labels.
var hostnamePattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// router reads the §13 variables; dataDir gives the admin socket's default.
func (r *reader) router(dataDir string) Router {
	rt := Router{
		HTTPAddr:      r.addr("KEYSTONE_PROXY_HTTP_ADDR", ":80"),
		HTTPSAddr:     r.addr("KEYSTONE_PROXY_HTTPS_ADDR", ":443"),
		TLS:           r.oneOf("KEYSTONE_TLS", TLSACME, TLSACME, TLSOff),
		ACMEDirectory: r.url("KEYSTONE_ACME_DIRECTORY", LetsEncryptDirectory).String(),
		ACMEEmail:     r.str("KEYSTONE_ACME_EMAIL", ""),
	}
	if v, ok := r.raw("KEYSTONE_APPS_DOMAIN"); ok {
		d := strings.TrimSuffix(strings.ToLower(v), ".")
		if len(d) > 253 || !hostnamePattern.MatchString(d) {
			r.problem("KEYSTONE_APPS_DOMAIN: %q is not a domain name like apps.example.com", v)
		} else {
			rt.AppsDomain = d
		}
	}
	rt.AllowedDomains = r.allowedDomains(rt.AppsDomain)
	if rt.ACMEEmail != "" && (!strings.Contains(rt.ACMEEmail, "@") || strings.ContainsAny(rt.ACMEEmail, " \t\r\n<>")) {
		r.problem("KEYSTONE_ACME_EMAIL: %q is not an e-mail address", rt.ACMEEmail)
	}
	rt.AdminSocket = r.adminSocket(dataDir)
	rt.ACMECARoots = r.caRoots()
	return rt
}

// allowedDomains reads KEYSTONE_ALLOWED_DOMAINS, default "*.<apps domain>".
func (r *reader) allowedDomains(appsDomain string) []string {
	v, ok := r.raw("KEYSTONE_ALLOWED_DOMAINS")
	if !ok {
		if appsDomain == "" {
			return nil
		}
		return []string{"*." + appsDomain}
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		name := strings.TrimPrefix(item, "*.")
		if len(name) > 253 || !hostnamePattern.MatchString(name) {
			r.problem("KEYSTONE_ALLOWED_DOMAINS: %q is neither a host name nor a *.suffix pattern", item)
			continue
		}
		out = append(out, item)
	}
	return out
}

// adminSocket reads KEYSTONE_PROXY_ADMIN: only unix://PATH, since a TCP
// admin port would let anything on the network move traffic.
func (r *reader) adminSocket(dataDir string) string {
	v, ok := r.raw("KEYSTONE_PROXY_ADMIN")
	if !ok {
		return filepath.Join(dataDir, "proxy.sock")
	}
	u, err := url.Parse(v)
	path := ""
	if err == nil && u.Scheme == "unix" {
		path = u.Host + u.Path // unix:///abs and unix://rel/ative both work
	}
	if path == "" {
		r.problem("KEYSTONE_PROXY_ADMIN: %q is not unix://PATH (the admin API listens on a Unix socket only)", v)
		return filepath.Join(dataDir, "proxy.sock")
	}
	return path
}

// caRoots reads the PEM file KEYSTONE_ACME_CA_ROOTS names and checks it holds
// at least one certificate.
func (r *reader) caRoots() []byte {
	file, ok := r.raw("KEYSTONE_ACME_CA_ROOTS")
	if !ok {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		r.problem("KEYSTONE_ACME_CA_ROOTS: cannot read %q: %v", file, unwrapPathError(err))
		return nil
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		r.problem("KEYSTONE_ACME_CA_ROOTS: %q holds no PEM certificate", file)
		return nil
	}
	return b
}
