package appurl_test

import (
	"strings"
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
		{"domain mode: the first stored host", tls, store.App{Name: "web", Repo: "shop", Hosts: []string{"shop.example.com", "web-shop-2.apps.example.com"}}, "https://shop.example.com/"},
		{"IP mode ignores stored hosts", ip, store.App{Name: "web", Repo: "shop", HostPort: 9001, Hosts: []string{"shop.example.com"}}, "http://203.0.113.5:9001/"},
	}
	for _, c := range cases {
		if got := c.cfg.URL(c.app); got != c.want {
			t.Errorf("%s: URL = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestCandidate: a clash takes the same label with -2, -3..., still one DNS label.
func TestCandidate(t *testing.T) {
	long := store.App{Name: "web", Repo: strings.Repeat("r", 80)}
	for _, c := range []struct {
		app     store.App
		attempt int
		want    string
	}{
		{store.App{Name: "web", Repo: "Shop"}, 0, "web-shop.apps.test"},
		{store.App{Name: "web", Repo: "Shop"}, 1, "web-shop-2.apps.test"},
		{store.App{Name: "web", Repo: "Shop"}, 9, "web-shop-10.apps.test"},
		{long, 0, "web-" + strings.Repeat("r", 59) + ".apps.test"},
		{long, 1, "web-" + strings.Repeat("r", 57) + "-2.apps.test"},
		{store.App{Name: "web-pr-3", Repo: "shop", PRNumber: 3}, 2, "pr-3-web-shop-3.apps.test"},
	} {
		got := appurl.Candidate(c.app, "apps.test", c.attempt)
		if got != c.want || len(strings.Split(got, ".")[0]) > 63 {
			t.Errorf("Candidate(%s/%s, %d) = %q, want %q", c.app.Repo, c.app.Name, c.attempt, got, c.want)
		}
	}
}
