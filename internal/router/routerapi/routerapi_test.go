package routerapi_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
)

func TestAdminAPI(t *testing.T) {
	dir := t.TempDir()
	r, err := router.New(router.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "proxy.sock")
	ln, err := routerapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: routerapi.Handler(r, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v, want 0600", fi.Mode(), err)
	}
	if _, err := routerapi.Listen(sock); err == nil {
		t.Fatal("a second router took the live socket")
	}

	ctx := context.Background()
	c := routerapi.NewClient(sock)
	v1, v2 := routertest.NewBackend(t, "v1"), routertest.NewBackend(t, "v2")
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "web", routerapi.RouteBody{Hosts: []string{"web.example.com"}, Target: v1.Addr()}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Switch(ctx, "web", routerapi.SwitchBody{Target: v2.Addr(), HealthPath: "/up", DrainTimeout: "5s"})
	if err != nil || res.Previous != v1.Addr() {
		t.Fatalf("switch = %+v, %v", res, err)
	}
	if rt, err := c.Route(ctx, "web"); err != nil || rt.Target != v2.Addr() {
		t.Fatalf("route = %+v, %v", rt, err)
	}
	statusOf := func(err error) int {
		var ae *routerapi.APIError
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"host of another service", second(c.Put(ctx, "api", routerapi.RouteBody{Hosts: []string{"web.example.com"}, Target: v1.Addr()})), 409},
		{"bad target", second(c.Put(ctx, "api", routerapi.RouteBody{Hosts: []string{"api.example.com"}, Target: "nope"})), 400},
		{"unknown route", second(c.Route(ctx, "nope")), 404},
		{"bad duration", second(c.Switch(ctx, "web", routerapi.SwitchBody{Target: v1.Addr(), DrainTimeout: "forever"})), 400},
		{"unhealthy target", second(c.Switch(ctx, "web", routerapi.SwitchBody{Target: "127.0.0.1:1", HealthTimeout: "200ms"})), 422},
	}
	for _, tc := range cases {
		if got := statusOf(tc.err); got != tc.want {
			t.Errorf("%s: %v (status %d), want %d", tc.name, tc.err, got, tc.want)
		}
	}
	m, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(m, `keystone_router_routes 1`) || !strings.Contains(m, `keystone_router_requests_total{service="web"}`) {
		t.Fatalf("metrics = %q, %v", m, err)
	}
	if list, err := c.Certificates(ctx); err != nil || len(list) != 0 {
		t.Fatalf("certificates with TLS off = %v, %v", list, err)
	}
	if err := c.Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if list, err := c.Routes(ctx); err != nil || len(list) != 0 {
		t.Fatalf("routes after delete = %v, %v", list, err)
	}
}

func second[T any](_ T, err error) error { return err }
