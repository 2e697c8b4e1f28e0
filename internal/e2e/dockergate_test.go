package e2e_test

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/client"
)

// dockerGate stands between Keystone and the real Docker engine, passing
// every API call through unchanged, except that while it is shut an image
// build waits at the gate. A test can so look at a deployment that is
// really running, for as long as it needs, without a sleep. (gittest's
// Stall cannot: the push job fetches the commit before the deployment
// exists, and the deploy finds it in its mirror.)
type dockerGate struct {
	host string // DOCKER_HOST to give Keystone

	mu   sync.Mutex
	open chan struct{} // closed while builds may pass
	held atomic.Int32  // builds that reached the gate while it was shut
}

// newDockerGate serves the gate on a Unix socket until the test ends; it
// starts open.
func newDockerGate(t *testing.T, docker *client.Client) *dockerGate {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: "docker"} // the client's transport dials its socket whatever the host
	if u, err := url.Parse(docker.DaemonHost()); err == nil && u.Scheme == "tcp" {
		target.Host = u.Host
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = docker.HTTPClient().Transport
	proxy.FlushInterval = -1 // build output and logs stream

	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := &dockerGate{host: "unix://" + sock, open: make(chan struct{})}
	close(g.open)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/build") && !g.wait(r) {
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { g.release(); srv.Close() })
	return g
}

// wait holds a build while the gate is shut; false when the caller left.
func (g *dockerGate) wait(r *http.Request) bool {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return true
	default:
	}
	g.held.Add(1)
	select {
	case <-open:
		return true
	case <-r.Context().Done():
		return false
	}
}

// shut makes builds from now on wait.
func (g *dockerGate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default: // already shut
	}
}

// release lets held and later builds pass.
func (g *dockerGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}
