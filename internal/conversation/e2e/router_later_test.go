package e2e_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestRouterStartedAfterKeystone: `keystone serve` starts while no router
// runs and serves the app on its host port; once `keystone proxy` starts
// (IP mode), the next push is switched through it: the app answers on the
// same port, now the router's, and /readyz checks the router (SPEC §13:
// either may start first).
func TestRouterStartedAfterKeystone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sock := w.proxySocket(t)
	w.start(t)
	readyz := func() int {
		resp, err := http.Get(w.ks.URL + "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	v1 := w.push(t, gittest.Behaviour{Version: "1"})
	if st := w.finalStatus(t, v1, 3*time.Minute); st.State != "success" {
		t.Fatalf("v1 without a router: %+v", st)
	}
	app := w.App(t, "web")
	if !deploytest.Serves(app.HostPort, "1") {
		t.Fatalf("v1 does not answer on its port %d", app.HostPort)
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz without a router = %d, want 200", code)
	}

	proxy, _ := runProxy(t, sock, "", w.env["KEYSTONE_PUBLIC_URL"])
	v2 := w.push(t, gittest.Behaviour{Version: "2"})
	if st := w.finalStatus(t, v2, 3*time.Minute); st.State != "success" {
		t.Fatalf("v2 with the router: %+v", st)
	}
	if !deploytest.Serves(app.HostPort, "2") {
		t.Fatalf("v2 does not answer on port %d", app.HostPort)
	}
	rt, err := proxy.Route(t.Context(), deploy.RouteService(app))
	if err != nil || rt.Port != app.HostPort {
		t.Fatalf("the router's route of the app = %+v, %v; want its port %d", rt, err, app.HostPort)
	}
	var d store.Deployment
	for _, x := range w.Deployments(t, "web") {
		if x.SHA == v2 {
			d = x
		}
	}
	if log := strings.Join(w.Log(t, d.ID), "\n"); !strings.Contains(log, "so the router can take the port") {
		t.Errorf("the deployment log does not say the router took the port:\n%s", log)
	}
	if code := readyz(); code != http.StatusOK {
		t.Errorf("/readyz with the router = %d, want 200", code)
	}
}
