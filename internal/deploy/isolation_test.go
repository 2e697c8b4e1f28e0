package deploy_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestAppsAreIsolated: the containers of two apps cannot reach each other
// (the apps' network has inter-container traffic off) though each reaches
// itself, and no container can open a raw socket (NET_RAW dropped).
func TestAppsAreIsolated(t *testing.T) {
	h := newHarness(t, "isolation")
	yml := []byte("apps:\n" +
		"  - name: web\n    branch: main\n    port: 8080\n    health_check_path: /healthz\n    health_check_timeout: 4s\n" +
		"  - name: api\n    branch: main\n    port: 8080\n    health_check_path: /healthz\n    health_check_timeout: 4s\n")
	sha := h.push(t, "main", deploytest.Files(t, yml, gittest.Behaviour{Version: "v1"}))
	web, api := h.deployOf(t, "web", sha), h.deployOf(t, "api", sha)
	mustState(t, web, store.StateSucceeded)
	mustState(t, api, store.StateSucceeded)
	webPort := h.App(t, "web").HostPort

	ipOf := func(d store.Deployment) string {
		info, err := h.Docker.ContainerInspect(context.Background(), d.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := info.NetworkSettings.Networks[deploy.AppsNetwork]
		if !ok || n.IPAddress == "" || len(info.NetworkSettings.Networks) != 1 {
			t.Fatalf("container of %d is on %v, want only %s", d.ID, info.NetworkSettings.Networks, deploy.AppsNetwork)
		}
		return n.IPAddress
	}
	dial := func(addr string) (int, string) {
		code, body, err := deploytest.Get(webPort, "/dial?addr="+url.QueryEscape(addr))
		if err != nil {
			t.Fatal(err)
		}
		return code, strings.TrimSpace(body)
	}
	if code, body := dial(net.JoinHostPort(ipOf(web), "8080")); code != http.StatusOK {
		t.Fatalf("web cannot reach itself (%d %s): the probe proves nothing", code, body)
	}
	if code, body := dial(net.JoinHostPort(ipOf(api), "8080")); code != http.StatusBadGateway {
		t.Errorf("web reached api's container: %d %s", code, body)
	}
	code, body, err := deploytest.Get(webPort, "/rawsocket")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusForbidden || !strings.Contains(body, "operation not permitted") {
		t.Errorf("raw socket: %d %s, want it refused", code, body)
	}
}
