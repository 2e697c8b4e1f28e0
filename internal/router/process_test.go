package router_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
)

// proxyProc is a running `keystone proxy` binary.
type proxyProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	admin  *routerapi.Client
	url    string
}

func startProxy(t *testing.T, dataDir string, httpPort int, extraEnv ...string) *proxyProc {
	t.Helper()
	cmd := exec.Command(keystonetest.Binary(t), "proxy")
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"KEYSTONE_DATA_DIR=" + dataDir, "KEYSTONE_APPS_DOMAIN=apps.test", "KEYSTONE_TLS=off",
		fmt.Sprintf("KEYSTONE_PROXY_HTTP_ADDR=127.0.0.1:%d", httpPort),
	}, extraEnv...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	p := &proxyProc{cmd: cmd, exited: exited, admin: routerapi.NewClient(filepath.Join(dataDir, "proxy.sock")), url: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	routertest.Eventually(t, 20*time.Second, "keystone proxy answering", func() bool {
		return p.admin.Health(context.Background()) == nil
	})
	return p
}

// TestProxyProcessSwitchUnderLoad drives the real binary: ~200 req/s over
// keep-alive and fresh connections, slow requests straddling the switches,
// through an update, a refused (unhealthy) update and a rollback: no request
// fails. Then a SIGKILL and restart of the proxy keeps the routes.
func TestProxyProcessSwitchUnderLoad(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	p := startProxy(t, dir, port)
	ctx := context.Background()
	v1, v2 := routertest.NewBackend(t, "v1"), routertest.NewBackend(t, "v2")
	if _, err := p.admin.Put(ctx, "web", routerapi.RouteBody{Hosts: []string{"web.apps.test"}, Target: v1.Addr()}); err != nil {
		t.Fatal(err)
	}

	keepAlive := &http.Client{Timeout: 10 * time.Second}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	send := func(c *http.Client, path string) {
		req, _ := http.NewRequest(http.MethodGet, p.url+path, nil)
		req.Host = "web.apps.test"
		resp, err := c.Do(req)
		sent.Add(1)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("%s: status %d", path, resp.StatusCode)
			}
		}
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
	}

	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Go(func() { // 200 req/s, alternating keep-alive and fresh connections
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c := keepAlive
			if i%2 == 1 {
				c = fresh
			}
			load.Go(func() { send(c, "/") })
		}
	})
	slow := func(on *routertest.Backend) {
		for range 3 {
			load.Go(func() { send(keepAlive, "/slow?ms=1500") })
		}
		routertest.Eventually(t, 5*time.Second, "slow requests in flight", func() bool { return on.SlowInFlight() == 3 })
	}

	// The load runs before the first switch and after the rollback: await
	// that many more answers (about 300 ms of it) rather than a fixed sleep.
	loadFor := func(answers int64, what string) {
		want := sent.Load() + answers
		routertest.Eventually(t, 30*time.Second, what, func() bool { return sent.Load() >= want })
	}
	loadFor(60, "load before the first switch")
	slow(v1)
	up, err := p.admin.Switch(ctx, "web", routerapi.SwitchBody{Target: v2.Addr(), HealthPath: "/up"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.admin.Switch(ctx, "web", routerapi.SwitchBody{Target: closedPort(t), HealthTimeout: "300ms"}); err == nil {
		t.Fatal("switch to a dead target was accepted")
	}
	slow(v2)
	back, err := p.admin.Switch(ctx, "web", routerapi.SwitchBody{Target: v1.Addr(), HealthPath: "/up"})
	if err != nil {
		t.Fatal(err)
	}
	loadFor(60, "load after the rollback")
	close(stop)
	load.Wait()

	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", n, sent.Load(), firstErr.Load())
	}
	for name, res := range map[string]any{"update": up, "rollback": back} {
		t.Logf("%s: %+v", name, res)
	}
	if up.Failed != 0 || back.Failed != 0 || up.DrainTimedOut != 0 || back.DrainTimedOut != 0 || up.Drained == 0 || back.Drained == 0 {
		t.Fatalf("switch results: update %+v, rollback %+v", up, back)
	}
	t.Logf("%d requests, 0 failed", sent.Load())

	// SIGKILL: the route comes back with the process, without anyone re-sending it.
	p.kill()
	p2 := startProxy(t, dir, port)
	req, _ := http.NewRequest(http.MethodGet, p2.url+"/", nil)
	req.Host = "web.apps.test"
	resp, err := fresh.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "v1" {
		t.Fatalf("after restart: %d %q, want v1", resp.StatusCode, body)
	}
}

// kill SIGKILLs the proxy and waits until it is gone.
func (p *proxyProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}
