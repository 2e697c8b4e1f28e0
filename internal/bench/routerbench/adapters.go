package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keystone-app/keystone/internal/router/routerapi"
)

// proxy is one proxy under test.
type proxy interface {
	name() string
	// start runs the proxy routed to target (host "web.bench.test") and
	// returns its front URL.
	start(ctx context.Context, target string) (string, error)
	// deploy switches to target, returning when the proxy's command returns.
	deploy(ctx context.Context, target string) error
	// addRoutes adds n more services, each on its own host, to target.
	addRoutes(ctx context.Context, n int, target string) error
	pid() int
	stop()
}

const benchHost = "web.bench.test"

// process is a child proxy process.
type process struct {
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *process) run(dir, bin string, env []string, args ...string) error {
	p.dir = dir
	logf, err := os.Create(filepath.Join(p.dir, "proxy.log"))
	if err != nil {
		return err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); logf.Close(); close(p.exited) }()
	return nil
}

func (p *process) pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *process) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// keystone drives `keystone proxy` through its admin API.
type keystone struct {
	bin string
	process
	admin *routerapi.Client
}

func (k *keystone) name() string { return "keystone proxy" }

func (k *keystone) start(ctx context.Context, target string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "routerbench-keystone-")
	if err != nil {
		return "", err
	}
	if err := k.run(dir, k.bin, []string{"KEYSTONE_DATA_DIR=" + dir, "KEYSTONE_APPS_DOMAIN=bench.test", "KEYSTONE_TLS=off",
		"KEYSTONE_PROXY_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(port)}, "proxy"); err != nil {
		return "", err
	}
	k.admin = routerapi.NewClient(filepath.Join(dir, "proxy.sock"))
	if err := waitFor(10*time.Second, "keystone proxy admin socket", func() bool { return k.admin.Health(ctx) == nil }); err != nil {
		return "", err
	}
	if _, err := k.admin.Put(ctx, "web", routerapi.RouteBody{Hosts: []string{benchHost}, Target: target}); err != nil {
		return "", err
	}
	return "http://127.0.0.1:" + strconv.Itoa(port), nil
}

func (k *keystone) deploy(ctx context.Context, target string) error {
	_, err := k.admin.Switch(ctx, "web", routerapi.SwitchBody{Target: target, HealthPath: "/up", HealthTimeout: "2s", DrainTimeout: "10s"})
	return err
}

func (k *keystone) addRoutes(ctx context.Context, n int, target string) error {
	for i := range n {
		name := fmt.Sprintf("app%03d", i)
		if _, err := k.admin.Put(ctx, name, routerapi.RouteBody{Hosts: []string{name + ".bench.test"}, Target: target}); err != nil {
			return err
		}
	}
	return nil
}

// kamal drives kamal-proxy through its CLI, as Kamal does.
type kamal struct {
	bin string
	process
}

func (k *kamal) name() string { return "kamal-proxy v0.9.2" }

func (k *kamal) env() []string { return []string{"XDG_RUNTIME_DIR=" + k.dir, "HOME=" + k.dir} }

func (k *kamal) start(ctx context.Context, target string) (string, error) {
	hp, err := freePort()
	if err != nil {
		return "", err
	}
	sp, err := freePort()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "routerbench-kamal-")
	if err != nil {
		return "", err
	}
	k.process.dir = dir
	if err := k.run(dir, k.bin, k.env(), "run", "--http-port", strconv.Itoa(hp), "--https-port", strconv.Itoa(sp)); err != nil {
		return "", err
	}
	if err := waitFor(10*time.Second, "kamal-proxy socket", func() bool {
		_, err := os.Stat(filepath.Join(dir, "kamal-proxy.sock"))
		return err == nil
	}); err != nil {
		return "", err
	}
	if err := k.cli(ctx, "deploy", "web", "--target", target, "--host", benchHost, "--deploy-timeout", "2s", "--drain-timeout", "10s"); err != nil {
		return "", err
	}
	return "http://127.0.0.1:" + strconv.Itoa(hp), nil
}

func (k *kamal) cli(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Env = append(os.Environ(), k.env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kamal-proxy %v: %v: %s", args, err, out)
	}
	return nil
}

func (k *kamal) deploy(ctx context.Context, target string) error {
	return k.cli(ctx, "deploy", "web", "--target", target, "--host", benchHost, "--deploy-timeout", "2s", "--drain-timeout", "10s")
}

func (k *kamal) addRoutes(ctx context.Context, n int, target string) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		name := fmt.Sprintf("app%03d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- k.cli(ctx, "deploy", name, "--target", target, "--host", name+".bench.test", "--deploy-timeout", "5s")
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// vmHWM is pid's peak resident set size in KiB.
func vmHWM(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	var kb int
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			return kb
		}
	}
	return 0
}
