package deploy_test

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/webhook"
)

// TestDomainsCannotBeTaken is the attack of SPEC §13's domain mode: app B of
// another installation's repository names, in its .keystone.yml, app A's
// domain, app A's default name, Keystone's own host and a name outside
// KEYSTONE_ALLOWED_DOMAINS. B's default name clashes with A's and takes a
// suffix. Each of B's updates fails with a failure naming the host and why,
// claims nothing, and A and B's previous version are served on their names
// throughout. Once A is removed, its
// names are free and B may claim them.
func TestDomainsCannotBeTaken(t *testing.T) {
	tr := startRouter(t)
	const own = "keystone.example.com"
	h := newHarness(t, "shop", func(o *options) {
		o.routes = tr.client
		o.cfg.AppsDomain = "apps.example.test"
		// Keystone's own host is allowed here: only the own-host rule refuses it.
		o.cfg.AllowedDomains = []string{"*.apps.example.test", "shop.example.com", own}
		o.cfg.OwnHost = own
	})
	ctx := context.Background()
	shaA := h.push(t, "main", deploytest.Files(t, ymlApp("web", "domains: [shop.example.com]"), gittest.Behaviour{Version: "a"}))
	mustState(t, h.deployOf(t, "web", shaA), store.StateSucceeded)
	a := h.App(t, "web")
	aHosts := []string{"shop.example.com", "web-shop.apps.example.test"}
	if !slices.Equal(a.Hosts, aHosts) {
		t.Fatalf("A's host names %q, want %q", a.Hosts, aHosts)
	}
	aServed := func(when string) {
		t.Helper()
		for _, host := range aHosts {
			if st, body, err := tr.get(host); err != nil || st != 200 || body != "version=a" {
				t.Fatalf("%s: %s answered %d %q %v, want A", when, host, st, body, err)
			}
		}
	}
	aServed("after A's deploy")

	// Mallory's repository, also named shop, in another installation.
	const mallory int64 = 4242
	h.GitHub.AddInstallation(mallory, "mallory", "mallory/shop")
	b := h.Git.CreateRepo(t, "mallory/shop", mallory, h.GitHub.RepositoryID("mallory/shop"))
	pushB := func(yml []byte, version string) store.Deployment {
		t.Helper()
		sha := b.Commit(t, "main", deploytest.Files(t, yml, gittest.Behaviour{Version: version}), "change")
		if _, err := h.intake.Record(ctx, webhook.Delivery{GUID: rand.Text(), Event: "push", InstallationID: mallory,
			Repository: b.FullName, Payload: b.PushEvent("main", sha, "mallory")}); err != nil {
			t.Fatal(err)
		}
		return h.deployOf(t, "web", sha)
	}
	// Without domains B deploys, at its default name: A's with a suffix.
	mustState(t, pushB(ymlApp("web"), "b"), store.StateSucceeded)
	bApp, err := h.Store.AppByName(ctx, "mallory", "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bApp.Hosts, []string{"web-shop-2.apps.example.test"}) {
		t.Errorf("B's host names %q, want [web-shop-2.apps.example.test]", bApp.Hosts)
	}
	if st, body, err := tr.get("web-shop-2.apps.example.test"); err != nil || st != 200 || body != "version=b" {
		t.Errorf("B at its default name: %d %q %v", st, body, err)
	}
	aServed("after B's deploy")

	for _, c := range []struct{ host, why string }{
		{"shop.example.com", "belongs to another app"},
		{"web-shop.apps.example.test", "belongs to another app"},
		{own, "is Keystone's own host"},
		{"evil.example.org", "is outside KEYSTONE_ALLOWED_DOMAINS"},
	} {
		d := pushB(ymlApp("web", "domains: [mallory.apps.example.test, "+c.host+"]"), "b-"+c.host)
		want := "Invalid .keystone.yml: domains: " + c.host + " " + c.why
		if d.State != store.StateFailed || d.Description != want {
			t.Errorf("B claiming %s: %s %q, want failed %q", c.host, d.State, d.Description, want)
		}
		for _, host := range []string{c.host, "mallory.apps.example.test"} {
			if owner, found, err := h.Store.HostOwner(ctx, host); err != nil || (found && owner != a.ID) {
				t.Errorf("after the refused claim of %s, %s is held by app %d (%v)", c.host, host, owner, err)
			}
		}
		aServed("after B claimed " + c.host)
		if st, body, err := tr.get("web-shop-2.apps.example.test"); err != nil || st != 200 || body != "version=b" {
			t.Errorf("B's serving version after its refused deploy: %d %q %v", st, body, err)
		}
	}

	// A leaves the file: its names are released and B may claim them.
	shaA2 := h.push(t, "main", map[string][]byte{".keystone.yml": ymlApp("api")})
	mustState(t, h.deployOf(t, "api", shaA2), store.StateSucceeded)
	if a := h.App(t, "web"); a.RemovedAt == nil || len(a.Hosts) != 0 {
		t.Fatalf("A after it left the file: removed at %v, host names %q", a.RemovedAt, a.Hosts)
	}
	// A's route is still in the router (reconciliation, an hour away here,
	// drops it): B's deploy drops it to take the name.
	d := pushB(ymlApp("web", "domains: [shop.example.com]"), "b2")
	mustState(t, d, store.StateSucceeded)
	if st, body, err := tr.get("shop.example.com"); err != nil || st != 200 || body != "version=b2" {
		t.Errorf("B at the name A released: %d %q %v", st, body, err)
	}
	rt, err := tr.client.Route(ctx, deploy.RouteService(bApp))
	if err != nil || !slices.Equal(rt.Hosts, []string{"shop.example.com", "web-shop-2.apps.example.test"}) {
		t.Errorf("B's route %+v %v, want both its names", rt, err)
	}
	if strings.Contains(d.Description, "Invalid") {
		t.Errorf("description %q", d.Description)
	}
}

// TestDomainsIgnoredInIPMode: without KEYSTONE_APPS_DOMAIN, domains: is
// accepted, claims nothing, and the deployment log says it is ignored.
func TestDomainsIgnoredInIPMode(t *testing.T) {
	h := newHarness(t, "ipmode")
	sha := h.push(t, "main", deploytest.Files(t, ymlApp("web", "domains: [shop.example.com]"), gittest.Behaviour{Version: "v1"}))
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateSucceeded)
	if app := h.App(t, "web"); len(app.Hosts) != 0 {
		t.Errorf("host names in IP mode: %q", app.Hosts)
	}
	if !slices.ContainsFunc(h.Log(t, d.ID), func(l string) bool { return strings.Contains(l, "shop.example.com ignored") }) {
		t.Errorf("the log does not say domains: is ignored:\n%s", strings.Join(h.Log(t, d.ID), "\n"))
	}
}
