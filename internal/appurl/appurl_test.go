package appurl_test

import (
	"testing"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/store"
)

func TestURL(t *testing.T) {
	web := store.App{Name: "web", Repo: "Shop", HostPort: 9001}
	preview := store.App{Name: "web-pr-7", Repo: "shop", HostPort: 9002, PRNumber: 7}
	ip := appurl.Config{AppHost: "203.0.113.5"}
	domain := appurl.Config{AppHost: "203.0.113.5", AppsDomain: "Apps.Example.com"}
	tls := appurl.Config{AppsDomain: "apps.example.com", HTTPS: true}
	cases := []struct {
		name string
		cfg  appurl.Config
		app  store.App
		want string
	}{
		{"IP mode", ip, web, "http://203.0.113.5:9001/"},
		{"IP mode preview: its own port", ip, preview, "http://203.0.113.5:9002/"},
		{"IP mode before a port", ip, store.App{Name: "web", Repo: "shop"}, ""},
		{"domain mode: the host, not the port", domain, web, "http://web-shop.apps.example.com/"},
		{"domain mode preview", domain, preview, "http://pr-7-web-shop.apps.example.com/"},
		{"domain mode before a port", domain, store.App{Name: "api", Repo: "shop"}, "http://api-shop.apps.example.com/"},
		{"https", tls, preview, "https://pr-7-web-shop.apps.example.com/"},
	}
	for _, c := range cases {
		if got := c.cfg.URL(c.app); got != c.want {
			t.Errorf("%s: URL = %q, want %q", c.name, got, c.want)
		}
	}
}
