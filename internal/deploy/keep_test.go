package deploy_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/store"
)

// switchLog passes every call to the real router's admin API and keeps the
// switch requests, so a test can read what reached the router.
type switchLog struct {
	deploy.RouteTable
	mu     sync.Mutex
	bodies []routerapi.SwitchBody
}

func (s *switchLog) Switch(ctx context.Context, service string, body routerapi.SwitchBody) (router.SwitchResult, error) {
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.mu.Unlock()
	return s.RouteTable.Switch(ctx, service, body)
}

func (s *switchLog) last(t *testing.T) routerapi.SwitchBody {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bodies) == 0 {
		t.Fatal("no switch reached the router")
	}
	return s.bodies[len(s.bodies)-1]
}

// clock is the engine's time, moved forward by tests.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }
func containerRunning(t *testing.T, h *harness, id string) bool {
	t.Helper()
	info, err := h.Docker.ContainerInspect(context.Background(), id)
	if client.IsErrNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.State != nil && info.State.Running
}

// kept returns the app's recorded containers by id.
func owned(t *testing.T, h *harness, appID int64) map[string]store.OwnedContainer {
	t.Helper()
	list, err := h.Store.OwnedContainersOfApp(context.Background(), appID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.OwnedContainer{}
	for _, c := range list {
		out[c.ID] = c
	}
	return out
}

func logHas(t *testing.T, h *harness, id int64, text string) bool {
	t.Helper()
	return slices.ContainsFunc(h.Log(t, id), func(l string) bool { return strings.Contains(l, text) })
}

// TestDrainTimeoutReachesRouter: the app's drain_timeout is what the
// router's switch is asked to wait for; without it, the default 30s.
func TestDrainTimeoutReachesRouter(t *testing.T) {
	tr := startRouter(t)
	spy := &switchLog{RouteTable: tr.client}
	h := newHarness(t, "drain", func(o *options) {
		o.routes = spy
		o.cfg.AppsDomain = "apps.test"
	})
	sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha1), store.StateSucceeded)
	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	mustState(t, h.deployOf(t, "web", sha2), store.StateSucceeded)
	if got := spy.last(t).DrainTimeout; got != "30s" {
		t.Errorf("switch without drain_timeout asked the router for drain %q, want 30s", got)
	}
	sha3 := h.push(t, "main", map[string][]byte{".keystone.yml": ymlApp("web", "drain_timeout: 7s"), "behaviour.json": []byte(`{"version": "v3"}`)})
	mustState(t, h.deployOf(t, "web", sha3), store.StateSucceeded)
	if got := spy.last(t).DrainTimeout; got != "7s" {
		t.Errorf("switch with drain_timeout: 7s asked the router for drain %q", got)
	}
	if st, body, err := tr.get(deploy.DefaultHost(h.App(t, "web"), "apps.test")); err != nil || st != 200 || body != "version=v3" {
		t.Fatalf("through the router: %d %q %v", st, body, err)
	}
}

// TestKeepPreviousInstantRollback (SPEC §13): with keep_previous, an update
// through the real router leaves the replaced container running, unrouted
// and recorded; reconciliation leaves it alone inside its window; a
// rollback to it is a route switch to that very container (no image
// started), and the version left is kept in turn; once the window passed,
// reconciliation removes the kept container and only it.
func TestKeepPreviousInstantRollback(t *testing.T) {
	tr := startRouter(t)
	clk := &clock{}
	const domain = "apps.test"
	h := newHarness(t, "keep", func(o *options) {
		o.routes = tr.client
		o.cfg.AppsDomain = domain
		o.now = clk.now
	})
	ctx := context.Background()
	yml := ymlApp("web", "keep_previous: 10m")
	sha1 := h.push(t, "main", deploytest.Files(t, yml, gittest.Behaviour{Version: "v1"}))
	first := h.deployOf(t, "web", sha1)
	mustState(t, first, store.StateSucceeded)
	app := h.App(t, "web")
	host := deploy.DefaultHost(app, domain)
	answers := func(want string) {
		t.Helper()
		if st, body, err := tr.get(host); err != nil || st != 200 || body != "version="+want {
			t.Fatalf("through the router: %d %q %v, want version=%s", st, body, err, want)
		}
	}

	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	up := h.deployOf(t, "web", sha2)
	mustState(t, up, store.StateSucceeded)
	answers("v2")
	c1, c2 := first.ContainerID, up.ContainerID
	if !containerRunning(t, h, c1) {
		t.Fatalf("the replaced container %s is not running after the update", c1[:12])
	}
	rec, ok := owned(t, h, app.ID)[c1]
	if !ok || !rec.KeptAt(clk.now()) || rec.KeepUntil.Before(clk.now().Add(9*time.Minute)) {
		t.Fatalf("the replaced container is recorded as %+v (recorded %v), want kept for 10m", rec, ok)
	}
	if !logHas(t, h, up.ID, "Keeping the previous container "+c1[:12]) {
		t.Errorf("the update's log does not say it keeps %s: %q", c1[:12], h.Log(t, up.ID))
	}
	// Inside the window reconciliation neither removes the kept container
	// nor routes it.
	if err := h.engine.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.engine.SyncRoutes(ctx); err != nil {
		t.Fatal(err)
	}
	if !containerRunning(t, h, c1) {
		t.Fatal("reconciliation removed the kept container inside its window")
	}
	answers("v2")

	rb := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, Actor: "bob", Trigger: store.TriggerComment})
	mustState(t, rb, store.StateSucceeded)
	h.cleanedUp(t, rb.ID)
	rb = deployment(t, h, rb.ID)
	answers("v1")
	if rb.ContainerID != c1 {
		t.Errorf("the rollback runs container %.12s, want the kept %s", rb.ContainerID, c1[:12])
	}
	if !logHas(t, h, rb.ID, "Rolled back by a route switch to the kept container "+c1[:12]) {
		t.Errorf("the rollback's log does not say it was a route switch: %q", h.Log(t, rb.ID))
	}
	for _, s := range h.steps(t, rb.ID) {
		if s == "start" || s == "fetch" || s == "build" {
			t.Errorf("the rollback ran step %q: %v", s, h.steps(t, rb.ID))
		}
	}
	if rb.RequestsDrained == nil {
		t.Error("the rollback's switch recorded no drain")
	}
	if rb.StartedAt != nil && rb.FinishedAt != nil {
		t.Logf("rollback by route switch: %s from the job's start to finished", rb.FinishedAt.Sub(*rb.StartedAt))
	}
	for _, l := range h.Log(t, rb.ID) {
		if strings.Contains(l, "after the job started") {
			t.Logf("rollback log: %s", l)
		}
	}
	// The version just left is kept in turn.
	rec, ok = owned(t, h, app.ID)[c2]
	if !containerRunning(t, h, c2) || !ok || !rec.KeptAt(clk.now()) {
		t.Fatalf("the container left by the rollback: running %v, recorded %+v %v; want kept", containerRunning(t, h, c2), rec, ok)
	}
	if err := h.engine.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !containerRunning(t, h, c2) || !containerRunning(t, h, c1) {
		t.Fatal("reconciliation inside the window removed a container")
	}

	// After the window the kept container goes, the serving one stays.
	clk.advance(11 * time.Minute)
	if err := h.engine.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if containerRunning(t, h, c2) {
		t.Error("the kept container still runs after its window")
	}
	if _, ok := owned(t, h, app.ID)[c2]; ok {
		t.Error("the kept container is still recorded after its window")
	}
	if !containerRunning(t, h, c1) {
		t.Fatal("reconciliation after the window removed the serving container")
	}
	answers("v1")
}

// TestKeepPreviousOutsideWindowAndWithoutRouter: a rollback after the
// window starts the target's image as before; without the router (the
// container holds the app's host port itself) keep_previous keeps nothing
// and the log says why.
func TestKeepPreviousOutsideWindowAndWithoutRouter(t *testing.T) {
	t.Run("outside the window", func(t *testing.T) {
		tr := startRouter(t)
		clk := &clock{}
		h := newHarness(t, "keepold", func(o *options) {
			o.routes = tr.client
			o.cfg.AppsDomain = "apps.test"
			o.now = clk.now
		})
		sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web", "keep_previous: 1m"), gittest.Behaviour{Version: "v1"}))
		first := h.deployOf(t, "web", sha1)
		mustState(t, first, store.StateSucceeded)
		sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
		mustState(t, h.deployOf(t, "web", sha2), store.StateSucceeded)
		clk.advance(2 * time.Minute)
		app := h.App(t, "web")
		rb := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, Actor: "bob", Trigger: store.TriggerComment})
		mustState(t, rb, store.StateSucceeded)
		h.cleanedUp(t, rb.ID)
		rb = deployment(t, h, rb.ID)
		if rb.ContainerID == first.ContainerID || logHas(t, h, rb.ID, "route switch") || !slices.Contains(h.steps(t, rb.ID), "start") {
			t.Errorf("a rollback after the window did not start the image: container %.12s, steps %v", rb.ContainerID, h.steps(t, rb.ID))
		}
		if st, body, err := tr.get(deploy.DefaultHost(app, "apps.test")); err != nil || st != 200 || body != "version=v1" {
			t.Fatalf("through the router: %d %q %v", st, body, err)
		}
		if err := h.engine.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		if containerRunning(t, h, first.ContainerID) {
			t.Error("the expired kept container still runs after reconciliation")
		}
	})
	t.Run("without the router", func(t *testing.T) {
		h := newHarness(t, "keepip")
		sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web", "keep_previous: 10m"), gittest.Behaviour{Version: "v1"}))
		first := h.deployOf(t, "web", sha1)
		mustState(t, first, store.StateSucceeded)
		sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
		up := h.deployOf(t, "web", sha2)
		mustState(t, up, store.StateSucceeded)
		if containerRunning(t, h, first.ContainerID) {
			t.Error("without the router the replaced container was kept")
		}
		if !logHas(t, h, up.ID, "keep_previous needs the router") {
			t.Errorf("the log does not say keep_previous did nothing: %q", h.Log(t, up.ID))
		}
	})
}
