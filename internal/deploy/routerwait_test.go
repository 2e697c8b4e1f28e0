package deploy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/store"
)

// restartableAdmin is the real router's admin API on a Unix socket that a
// test can stop and start again, as a restarting `keystone proxy` does,
// while its data plane keeps serving.
type restartableAdmin struct {
	t      *testing.T
	r      *router.Router
	sock   string
	client *routerapi.Client
	mu     sync.Mutex
	srv    *http.Server
}

func newRestartableAdmin(t *testing.T, r *router.Router) *restartableAdmin {
	t.Helper()
	dir, err := os.MkdirTemp("", "ksw") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &restartableAdmin{t: t, r: r, sock: filepath.Join(dir, "a.sock")}
	a.client = routerapi.NewClient(a.sock)
	a.start()
	t.Cleanup(a.stop)
	return a
}

func (a *restartableAdmin) start() {
	a.t.Helper()
	ln, err := routerapi.Listen(a.sock)
	if err != nil {
		a.t.Fatal(err)
	}
	srv := &http.Server{Handler: routerapi.Handler(a.r, nil)}
	go func() { _ = srv.Serve(ln) }()
	a.mu.Lock()
	a.srv = srv
	a.mu.Unlock()
}

// stop closes the API and its connections; the socket file goes with the
// listener, as a killed router's stale one would be refused.
func (a *restartableAdmin) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		a.srv.Close()
		a.srv = nil
	}
}

// TestSwitchWaitsForTheRouter: when the router's admin API does not answer
// as a deployment is about to switch (the router restarting), the switch
// waits for it, saying so in the log, and the deployment succeeds on its
// first attempt once the router is back; the old version serves through
// the router meanwhile.
func TestSwitchWaitsForTheRouter(t *testing.T) {
	r, err := router.New(router.Options{StateDir: t.TempDir(), PortHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	admin := newRestartableAdmin(t, r)
	data := httptest.NewServer(r)
	t.Cleanup(data.Close)
	addr := strings.TrimPrefix(data.URL, "http://")
	h := newHarness(t, "routerwait", func(o *options) {
		o.routes = admin.client
		o.cfg.AppsDomain = "apps.test"
	})
	sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha1), store.StateSucceeded)
	host := deploy.DefaultHost(h.App(t, "web"), "apps.test")

	admin.stop()
	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	h.logging(t, "web", sha2, "does not answer: waiting up to", "the deployment of v2 waiting for the router")
	if st, body, err := routertest.GetVia(addr, host); err != nil || st != 200 || body != "version=v1" {
		t.Errorf("while the switch waits the router answers %d %q %v, want version=v1", st, body, err)
	}
	admin.start()
	d := h.deployOf(t, "web", sha2)
	log := strings.Join(h.Log(t, d.ID), "\n")
	mustState(t, d, store.StateSucceeded)
	if strings.Contains(log, "Attempt 1 of") || !strings.Contains(log, "The router answers again after") {
		t.Errorf("the deployment did not wait for the router within its first attempt:\n%s", log)
	}
	if st, body, err := routertest.GetVia(addr, host); err != nil || st != 200 || body != "version=v2" {
		t.Errorf("after the switch the router answers %d %q %v, want version=v2", st, body, err)
	}
	var attempts int
	if err := h.Store.Pool().QueryRow(context.Background(), `SELECT max(attempt) FROM river_job
		WHERE kind = 'deploy' AND args->>'deployment_id' = $1`, strconv.FormatInt(d.ID, 10)).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 {
		t.Errorf("the deploy job ran %d attempts, want 1", attempts)
	}
}
