package server

import (
	"testing"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/store"
)

// TestAppURLsFollowTheRouterConfig: the links Keystone writes (GitHub's
// environment_url, the PR comment, the status page) name the app's host
// under KEYSTONE_APPS_DOMAIN, over https with ACME, and its port otherwise.
func TestAppURLsFollowTheRouterConfig(t *testing.T) {
	preview := store.App{Name: "web-pr-3", Repo: "shop", HostPort: 9004, PRNumber: 3}
	for _, c := range []struct {
		name   string
		router config.Router
		want   string
	}{
		{"IP mode", config.Router{TLS: config.TLSACME}, "http://203.0.113.5:9004/"},
		{"domain mode, ACME", config.Router{AppsDomain: "apps.example.com", TLS: config.TLSACME}, "https://pr-3-web-shop.apps.example.com/"},
		{"domain mode, TLS off", config.Router{AppsDomain: "apps.example.com", TLS: config.TLSOff}, "http://pr-3-web-shop.apps.example.com/"},
	} {
		p := &parts{cfg: config.Config{AppHost: "203.0.113.5", Router: c.router}}
		if got := p.appURLs().URL(preview); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
