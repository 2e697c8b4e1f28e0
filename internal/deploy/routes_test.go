package deploy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/store"
)

// testRouter is the real router with its admin API on a Unix socket and its
// data plane on a loopback port.
type testRouter struct {
	client *routerapi.Client
	url    string
}

func startRouter(t *testing.T) *testRouter {
	t.Helper()
	r, err := router.New(router.Options{StateDir: t.TempDir(), PortHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// Short path: Unix socket paths are limited to ~100 bytes.
	dir, err := os.MkdirTemp("", "ksr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "a.sock")
	ln, err := routerapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	admin := &http.Server{Handler: routerapi.Handler(r, nil)}
	go admin.Serve(ln)
	t.Cleanup(func() { admin.Close() })
	data := httptest.NewServer(r)
	t.Cleanup(data.Close)
	return &testRouter{client: routerapi.NewClient(sock), url: data.URL}
}

// get asks the router's data plane for / as host.
func (tr *testRouter) get(host string) (int, string, error) {
	return routertest.GetVia(strings.TrimPrefix(tr.url, "http://"), host)
}

// TestRoutesFollowDeploys: with a router (domain mode), a first deployment
// puts the app's route at its default host name to its container on a
// loopback port; an update switches it to the new version; a router that
// lost its routes gets them back from the database by SyncRoutes, except
// for an app a job holds (that job routes it); an unknown host gets the
// router's 404.
func TestRoutesFollowDeploys(t *testing.T) {
	tr := startRouter(t)
	h := newHarness(t, "shop_front", func(o *options) {
		o.routes = tr.client
		o.cfg.AppsDomain = "Apps.Example.TEST"
	})
	yml := ymlApp("web")
	sha1 := h.push(t, "main", deploytest.Files(t, yml, gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha1), store.StateSucceeded)
	app := h.App(t, "web")
	host := "web-shop-front.apps.example.test"
	if got := deploy.DefaultHost(app, "Apps.Example.TEST"); got != host {
		t.Fatalf("default host %q, want %q", got, host)
	}
	rt, err := tr.client.Route(context.Background(), deploy.RouteService(app))
	if err != nil {
		t.Fatalf("route after the first deploy: %v", err)
	}
	// The container is published on an ephemeral loopback port, not the
	// app's host port: only the router reaches it.
	if !strings.HasPrefix(rt.Target, "127.0.0.1:") || rt.Target == "127.0.0.1:"+strconv.Itoa(app.HostPort) ||
		len(rt.Hosts) != 1 || rt.Hosts[0] != host {
		t.Fatalf("route %+v, want %s → 127.0.0.1:<ephemeral port>", rt, host)
	}
	if st, body, err := tr.get(host); err != nil || st != 200 || body != "version=v1" {
		t.Fatalf("through the router: %d %q %v", st, body, err)
	}

	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	mustState(t, h.deployOf(t, "web", sha2), store.StateSucceeded)
	if st, body, err := tr.get(host); err != nil || st != 200 || body != "version=v2" {
		t.Fatalf("through the router after the update: %d %q %v", st, body, err)
	}
	if st, _, _ := tr.get("other.apps.example.test"); st != http.StatusNotFound {
		t.Errorf("unknown host answered %d, want 404", st)
	}

	// The router comes back empty: the database puts the route again.
	ctx := context.Background()
	if err := tr.client.Delete(ctx, deploy.RouteService(app)); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := tr.get(host); st != http.StatusNotFound {
		t.Fatalf("after the route's removal the host answered %d", st)
	}
	// While a job holds the app (it switches the route itself), SyncRoutes
	// leaves the app's route alone.
	release := h.lockApp(t, app.ID)
	if err := h.engine.SyncRoutes(ctx); err != nil {
		t.Fatalf("sync routes while the app is locked: %v", err)
	}
	if st, _, _ := tr.get(host); st != http.StatusNotFound {
		t.Errorf("SyncRoutes put the route of a locked app: the host answered %d", st)
	}
	release()
	if err := h.engine.SyncRoutes(ctx); err != nil {
		t.Fatalf("sync routes: %v", err)
	}
	if st, body, err := tr.get(host); err != nil || st != 200 || body != "version=v2" {
		t.Fatalf("through the router after SyncRoutes: %d %q %v", st, body, err)
	}
	if err := h.engine.RouterReady(ctx); err != nil {
		t.Errorf("RouterReady: %v", err)
	}
}

// TestDefaultHost: names a repository may hold become one DNS label.
func TestDefaultHost(t *testing.T) {
	for _, c := range []struct{ name, repo, want string }{
		{"web", "shop", "web-shop.apps.test"},
		{"API", "My.Repo_x", "api-my-repo-x.apps.test"},
		{"-a-", "-b-", "a---b.apps.test"},
		{"x", strings.Repeat("r", 80), "x-" + strings.Repeat("r", 61) + ".apps.test"},
		{"web", "shop..evil.com/", "web-shop--evil-com.apps.test"},
	} {
		if got := deploy.DefaultHost(store.App{Name: c.name, Repo: c.repo}, "Apps.Test"); got != c.want {
			t.Errorf("DefaultHost(%q, %q) = %q, want %q", c.name, c.repo, got, c.want)
		}
	}
}

// TestDefaultHostOfPreview: a preview is pr-<N>-<app>-<repo> (SPEC §14).
func TestDefaultHostOfPreview(t *testing.T) {
	for _, c := range []struct {
		app, repo string
		pr        int
		want      string
	}{
		{"web", "shop", 7, "pr-7-web-shop.apps.test"},
		{"web-pr-3", "shop", 12, "pr-12-web-pr-3-shop.apps.test"},
	} {
		a := store.App{Name: store.PreviewName(c.app, c.pr), Repo: c.repo, PRNumber: c.pr, ParentAppID: 1}
		if got := deploy.DefaultHost(a, "apps.test"); got != c.want {
			t.Errorf("DefaultHost of preview %d of %s = %q, want %q", c.pr, c.app, got, c.want)
		}
	}
}

// TestRouterReadyWithoutRouter: an engine without a router says so.
func TestRouterReadyWithoutRouter(t *testing.T) {
	h := newHarness(t, "norouter")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.engine.RouterReady(ctx); err == nil {
		t.Error("RouterReady without a router: nil error")
	}
	if err := h.engine.SyncRoutes(ctx); err != nil {
		t.Errorf("SyncRoutes without a router: %v", err)
	}
}
