package deploy_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/store"
)

// lostSwitch is the router whose answers to the next lose switches are
// errors although the switch was carried out (as when the router moved the
// traffic but could not save its route table, or the database fails
// before the deployment is finished). An error the router answers, not a
// connection lost: a switch whose answer was lost is asked again
// (routerwait.go).
type lostSwitch struct {
	deploy.RouteTable
	lose atomic.Int32
}

func (l *lostSwitch) Switch(ctx context.Context, service string, body routerapi.SwitchBody) (router.SwitchResult, error) {
	res, err := l.RouteTable.Switch(ctx, service, body)
	if err == nil && l.lose.Add(-1) >= 0 {
		return router.SwitchResult{}, &routerapi.APIError{Status: 500, Message: "switch " + service + ": traffic moved but the route table was not saved"}
	}
	return res, err
}

// TestFailedAttemptAfterSwitchKeepsServing: an update's attempt fails after
// the router moved the app's route to the new container. The clean-up of
// the failed attempt removes that container, which does not serve as far
// as the database knows; it must first put the route back to the container
// that does, or the app answers 502 until the next attempt switches (the
// fault suite saw this when PostgreSQL stopped during an update). A client
// sending requests through the router sees none fail, and the retried
// attempt deploys v2. Fails without the route put back in reconcileApp.
func TestFailedAttemptAfterSwitchKeepsServing(t *testing.T) {
	tr := startRouter(t)
	routes := &lostSwitch{RouteTable: tr.client}
	const domain = "apps.test"
	h := newHarness(t, "lost_switch", func(o *options) {
		o.routes = routes
		o.cfg.AppsDomain = domain
	})
	sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha1), store.StateSucceeded)
	host := deploy.DefaultHost(h.App(t, "web"), domain)
	l := startLoad(strings.TrimPrefix(tr.url, "http://"), host, 100)
	deploytest.Eventually(t, 10*time.Second, "the load client gets answers", func() (bool, error) {
		return l.ok.Load() > 20, nil
	})

	routes.lose.Store(1)
	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	up := h.deployOf(t, "web", sha2)
	mustState(t, up, store.StateSucceeded)
	if routes.lose.Load() >= 0 {
		t.Fatal("no switch answer was lost: the test proves nothing")
	}
	seen := l.ok.Load()
	deploytest.Eventually(t, 10*time.Second, "answers after the update", func() (bool, error) {
		return l.ok.Load() > seen+20, nil
	})
	l.finish()
	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed: %v", n, n+l.ok.Load(), l.problems)
	}
	if l.seen["version=v2"] == 0 {
		t.Errorf("the load never saw v2: %v", l.seen)
	}
	if log := strings.Join(h.Log(t, up.ID), "\n"); !strings.Contains(log, "Attempt 1 of") {
		t.Errorf("the update did not fail an attempt:\n%s", log)
	}
}
