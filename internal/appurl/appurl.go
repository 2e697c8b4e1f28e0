// Package appurl says where an app is served: the one place that knows an
// app's host name under KEYSTONE_APPS_DOMAIN (SPEC §13, §14) and its URL in
// IP mode, for the router's routes, GitHub's environment_url, the PR comment
// and the status page alike.
package appurl

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/keystone-app/keystone/internal/store"
)

// Config is what app URLs are made of.
type Config struct {
	// AppHost is the host of app URLs in IP mode (KEYSTONE_APP_HOST).
	AppHost string
	// AppsDomain is KEYSTONE_APPS_DOMAIN; "" is IP mode.
	AppsDomain string
	// HTTPS says the router serves apps over https (domain mode with
	// KEYSTONE_TLS=acme).
	HTTPS bool
}

// URL is where app is served: https://<host>/ (or http://) in domain mode,
// host being the app's first stored host name (its first domains: entry,
// else its default), else http://<AppHost>:<port>/; "" in IP mode before the app has a
// port.
func (c Config) URL(app store.App) string {
	if c.AppsDomain != "" {
		scheme := "http://"
		if c.HTTPS {
			scheme = "https://"
		}
		host := Host(app, c.AppsDomain) // what its first deploy will allocate
		if len(app.Hosts) > 0 {
			host = app.Hosts[0]
		}
		return scheme + host + "/"
	}
	if app.HostPort == 0 || c.AppHost == "" {
		return ""
	}
	return "http://" + c.AppHost + ":" + strconv.Itoa(app.HostPort) + "/"
}

// Host is an app's host name under the apps domain,
// `<app>-<repo>.<domain>`, or `pr-<N>-<app>-<repo>.<domain>` for the preview
// of pull request N of app (SPEC §14), in lower case, every character a DNS
// label may not hold made '-'.
func Host(app store.App, domain string) string { return Candidate(app, domain, 0) }

// Candidate is the attempt-th candidate for an app's default host name:
// Host's name for attempt 0; when another app holds that, the same label
// ending in -2, -3... (cut to fit a DNS label) for attempts 1, 2...
func Candidate(app store.App, domain string, attempt int) string {
	name := app.Name
	if app.Preview() {
		suffix := store.PreviewName("", app.PRNumber) // "-pr-<N>"
		name = fmt.Sprintf("pr-%d-%s", app.PRNumber, strings.TrimSuffix(app.Name, suffix))
	}
	label := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		default:
			return '-'
		}
	}, strings.ToLower(name+"-"+app.Repo))
	label = strings.Trim(label, "-")
	suffix := ""
	if attempt > 0 {
		suffix = "-" + strconv.Itoa(attempt+1)
	}
	if len(label)+len(suffix) > 63 {
		label = strings.Trim(label[:63-len(suffix)], "-")
	}
	return label + suffix + "." + strings.ToLower(domain)
}
