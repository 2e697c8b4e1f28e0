package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/store"
)

// startProxyBinary runs the real `keystone proxy` with TLS off, in domain
// mode under domain, or in IP mode when domain is "".
func startProxyBinary(t *testing.T, domain string) *keystonetest.Proxy {
	t.Helper()
	env := map[string]string{"KEYSTONE_PUBLIC_URL": "http://keystone.test:8080"}
	if domain != "" {
		env["KEYSTONE_APPS_DOMAIN"] = domain
	}
	return keystonetest.StartProxy(t, env)
}

// load sends paced requests through the proxy from keep-alive and
// fresh-connection clients until stopped, counting answers by body and
// every failure (an error or a status other than 200).
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	problems   []string
	seen       map[string]int
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(addr, host string, perSecond int) *load {
	l := &load{stop: make(chan struct{}), seen: map[string]int{}}
	clients := []*http.Client{
		{Timeout: 10 * time.Second},
		{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	workers := 4
	for i := range workers {
		c := clients[i%len(clients)]
		l.wg.Go(func() {
			tick := time.NewTicker(time.Second * time.Duration(workers) / time.Duration(perSecond))
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.one(c, addr, host)
			}
		})
	}
	return l
}

func (l *load) one(c *http.Client, addr, host string) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		l.fail(err.Error())
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		l.fail(fmt.Sprintf("%d %q %v", resp.StatusCode, b, err))
		return
	}
	l.ok.Add(1)
	l.mu.Lock()
	l.seen[strings.TrimSpace(string(b))]++
	l.mu.Unlock()
}

func (l *load) fail(why string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.problems) < 10 {
		l.problems = append(l.problems, why)
	}
	l.mu.Unlock()
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

// TestZeroDowntimeThroughProxy: with the real `keystone proxy` binary,
// a client sending ~200 requests/s (keep-alive and fresh connections) sees
// no failed request across an update, a failed update and a rollback; each
// switch records what the old version drained; the failed update leaves the
// old version routed; replaced containers are removed. In domain mode the
// client asks by host name, in IP mode on the app's host port, which the
// router owns (SPEC §13).
func TestZeroDowntimeThroughProxy(t *testing.T) {
	t.Run("domain mode", func(t *testing.T) { zeroDowntime(t, "apps.test") })
	t.Run("IP mode", func(t *testing.T) { zeroDowntime(t, "") })
}

func zeroDowntime(t *testing.T, domain string) {
	p := startProxyBinary(t, domain)
	h := newHarness(t, "zdt", func(o *options) {
		o.routes = p.Client
		o.cfg.AppsDomain = domain
	})
	sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha1), store.StateSucceeded)
	app := h.App(t, "web")
	host, addr := deploy.DefaultHost(app, domain), p.HTTPAddr
	if domain == "" {
		host, addr = "", fmt.Sprintf("127.0.0.1:%d", app.HostPort)
		if n := publishedOnHostPort(t, h, app.HostPort); n != 0 {
			t.Fatalf("%d containers publish the app's host port %d: the router should own it", n, app.HostPort)
		}
	}

	l := startLoad(addr, host, 200)
	deploytest.Eventually(t, 10*time.Second, "the load client gets answers", func() (bool, error) {
		return l.ok.Load() > 20, nil
	})

	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	up := h.deployOf(t, "web", sha2)
	mustState(t, up, store.StateSucceeded)
	h.cleanedUp(t, up.ID)

	sha3 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v3", "health": 500}`)})
	bad := h.deployOf(t, "web", sha3)
	mustState(t, bad, store.StateFailed)
	if st, body, err := routertest.GetVia(addr, host); err != nil || st != 200 || body != "version=v2" {
		t.Fatalf("after the failed update the proxy answers %d %q %v, want version=v2", st, body, err)
	}

	rb := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, Actor: "bob", Trigger: store.TriggerComment})
	mustState(t, rb, store.StateSucceeded)
	seenBefore := l.ok.Load()
	deploytest.Eventually(t, 10*time.Second, "answers after the rollback", func() (bool, error) {
		return l.ok.Load() > seenBefore+20, nil
	})
	l.finish()

	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed: %v", n, n+l.ok.Load(), l.problems)
	}
	for _, v := range []string{"version=v1", "version=v2"} {
		if l.seen[v] == 0 {
			t.Errorf("the load never saw %s: %v", v, l.seen)
		}
	}
	if l.seen["version=v3"] != 0 {
		t.Errorf("the unhealthy v3 answered %d requests", l.seen["version=v3"])
	}
	if st, body, err := routertest.GetVia(addr, host); err != nil || st != 200 || body != "version=v1" {
		t.Errorf("after the rollback the proxy answers %d %q %v, want version=v1", st, body, err)
	}
	for _, d := range []store.Deployment{deployment(t, h, up.ID), deployment(t, h, rb.ID)} {
		if d.RequestsDrained == nil || d.RequestsFailed == nil || *d.RequestsFailed != 0 {
			t.Errorf("deployment %d records drained %v failed %v", d.ID, d.RequestsDrained, d.RequestsFailed)
		}
	}
	if d := deployment(t, h, bad.ID); d.RequestsDrained != nil {
		t.Errorf("the failed update recorded a switch: drained %v", *d.RequestsDrained)
	}
	t.Logf("load: %d answered, %d failed, by version %v", l.ok.Load(), l.failed.Load(), l.seen)
}

// publishedOnHostPort counts the harness's containers published on port.
func publishedOnHostPort(t *testing.T, h *harness, port int) int {
	t.Helper()
	list, err := h.Docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: h.Filter()})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range list {
		for _, p := range c.Ports {
			if int(p.PublicPort) == port {
				n++ // once per container, though IPv4 and IPv6 list it twice
				break
			}
		}
	}
	return n
}

func deployment(t *testing.T, h *harness, id int64) store.Deployment {
	t.Helper()
	d, err := h.Store.Deployment(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRouterTakesOverAnIPModeHostPort: an app deployed while no router ran
// has a container publishing its host port itself. With the router in IP
// mode, reconciliation leaves that app alone (the router could not bind the
// port), and the app's next deploy stops the old container once the new one
// is healthy, with the log saying so, and gives the port to the router: the
// app answers on the same port, through the router, and no container
// publishes it any more.
func TestRouterTakesOverAnIPModeHostPort(t *testing.T) {
	p := startProxyBinary(t, "")
	h := newHarness(t, "legacy")
	ctx := context.Background()
	sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha1), store.StateSucceeded)
	app := h.App(t, "web")
	if n := publishedOnHostPort(t, h, app.HostPort); n != 1 {
		t.Fatalf("without a router %d containers publish port %d, want 1", n, app.HostPort)
	}

	h.restart(t, func(o *options) { o.routes = p.Client })
	if err := h.engine.SyncRoutes(ctx); err != nil {
		t.Fatalf("sync routes beside a container holding the port: %v", err)
	}
	if routes, err := p.Client.Routes(ctx); err != nil || len(routes) != 0 {
		t.Fatalf("routes before the next deploy = %+v, %v; want none", routes, err)
	}
	if !deploytest.Serves(app.HostPort, "v1") {
		t.Fatal("v1 stopped answering on its port when the router appeared")
	}

	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	d := h.deployOf(t, "web", sha2)
	mustState(t, d, store.StateSucceeded)
	if !deploytest.Serves(app.HostPort, "v2") {
		t.Fatalf("v2 does not answer on port %d", app.HostPort)
	}
	if n := publishedOnHostPort(t, h, app.HostPort); n != 0 {
		t.Errorf("%d containers still publish port %d after the router took it", n, app.HostPort)
	}
	rt, err := p.Client.Route(ctx, deploy.RouteService(app))
	if err != nil || rt.Port != app.HostPort {
		t.Errorf("the app's route = %+v, %v; want port %d", rt, err, app.HostPort)
	}
	if log := strings.Join(h.Log(t, d.ID), "\n"); !strings.Contains(log, "stopping it so the router can take the port") {
		t.Errorf("the deployment log does not say the port moved to the router:\n%s", log)
	}
}
