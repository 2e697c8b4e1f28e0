package keystonetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/router/routerapi"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/testlog"
)

// Proxy is a running `keystone proxy`.
type Proxy struct {
	// Admin is the router's admin socket; `keystone serve` reaches it with
	// KEYSTONE_PROXY_ADMIN=unix://Admin.
	Admin string
	// HTTPAddr is the data plane's plain-HTTP listener (domain mode).
	HTTPAddr string
	Client   *routerapi.Client
}

// StartProxy runs `keystone proxy` with TLS off, its admin API on a socket
// in a new directory and its HTTP listener on a free loopback port, plus
// env (KEYSTONE_APPS_DOMAIN for domain mode; without it, IP mode), and
// waits until its admin API answers. It is killed when the test ends; its
// output is logged if the test failed.
func StartProxy(t testing.TB, env map[string]string) *Proxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "ksp") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &Proxy{Admin: filepath.Join(dir, "a.sock"), HTTPAddr: fmt.Sprintf("127.0.0.1:%d", routertest.FreePort(t))}
	cmd := exec.Command(Binary(t), "proxy")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"KEYSTONE_DATA_DIR=" + filepath.Join(dir, "data"), "KEYSTONE_TLS=off",
		"KEYSTONE_PROXY_HTTP_ADDR=" + p.HTTPAddr, "KEYSTONE_PROXY_ADMIN=unix://" + p.Admin}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out testlog.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("keystonetest: start keystone proxy: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("keystone proxy output:\n%s", out.String())
		}
	})
	p.Client = routerapi.NewClient(p.Admin)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := p.Client.Health(ctx)
		cancel()
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("keystonetest: keystone proxy does not answer on %s: %v\n%s", p.Admin, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
