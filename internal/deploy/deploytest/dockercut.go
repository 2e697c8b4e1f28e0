package deploytest

import (
	"bytes"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/docker/docker/client"
)

// DockerCut stands between Keystone and the real Docker engine on a Unix
// socket of its own (Host, a DOCKER_HOST): it passes every connection's
// bytes through unchanged (API calls, build output, BuildKit sessions)
// until it is cut. Cut closes the socket and every live connection, so
// that Keystone finds the engine unreachable, mid-call or at its next
// call, as when the daemon stops or its socket proxy fails; Restore
// listens again on the same socket.
type DockerCut struct {
	Host string

	t             testing.TB
	sock          string
	network, addr string // the engine's
	mu            sync.Mutex
	ln            net.Listener
	conns         map[net.Conn]bool
	cuts          int
	armed         []byte        // a request line part that cuts when sent
	armedCut      chan struct{} // closed when the armed cut happened
	hold          func([]byte) bool
	held          chan struct{} // closed when a request was held
	release       chan struct{} // closed to let held requests through
	dropHeld      bool          // at release: drop the held request
}

// NewDockerCut serves the cut in front of docker's engine until the test
// ends; it starts connected.
func NewDockerCut(t testing.TB, docker *client.Client) *DockerCut {
	t.Helper()
	u, err := url.Parse(docker.DaemonHost())
	if err != nil {
		t.Fatalf("deploytest: the engine's address %q: %v", docker.DaemonHost(), err)
	}
	network, addr := u.Scheme, u.Host
	if network == "unix" {
		addr = u.Path
	}
	dir, err := os.MkdirTemp("", "ksd") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &DockerCut{t: t, sock: filepath.Join(dir, "docker.sock"), network: network, addr: addr, conns: map[net.Conn]bool{}}
	c.Host = "unix://" + c.sock
	c.Restore()
	t.Cleanup(func() { c.Release(); c.Cut() })
	return c
}

// Cut closes the socket and every connection through it; new ones are
// refused (there is no socket) until Restore.
func (c *DockerCut) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutLocked()
}

func (c *DockerCut) cutLocked() {
	if c.ln == nil {
		return
	}
	c.ln.Close() // removes the socket file
	c.ln = nil
	for conn := range c.conns {
		conn.Close()
	}
	clear(c.conns)
	c.cuts++
	if c.armedCut != nil {
		close(c.armedCut)
		c.armed, c.armedCut = nil, nil
	}
}

// CutAt arms a cut for the moment a request whose bytes contain part (e.g.
// "/start HTTP/1.1") is sent: that request never reaches the engine. The
// channel is closed once the cut happened.
func (c *DockerCut) CutAt(part string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.armedCut = []byte(part), make(chan struct{})
	return c.armedCut
}

// HoldAt holds the first request whose bytes match from the moment it is
// sent, the engine not seeing it, until Release: a test so stops Keystone
// at an exact call (creating or starting a container, removing one). The
// channel is closed once a request is held. A held request goes on to the
// engine at Release even if its sender is gone meanwhile, as a request
// sent just before a crash would.
func (c *DockerCut) HoldAt(match func(request []byte) bool) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold, c.held, c.release = match, make(chan struct{}), make(chan struct{})
	return c.held
}

// Release lets a held request through and holds no more.
func (c *DockerCut) Release() { c.letGo(false) }

// Drop closes a held request's connection, the engine never seeing it (as
// if its sender died just before sending it), and holds no more.
func (c *DockerCut) Drop() { c.letGo(true) }

func (c *DockerCut) letGo(drop bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropHeld = drop
	if c.release != nil {
		close(c.release)
	}
	c.hold, c.held, c.release = nil, nil, nil
}

// Restore listens again; it fails the test if the socket cannot be made.
func (c *DockerCut) Restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		return
	}
	_ = os.Remove(c.sock)
	ln, err := net.Listen("unix", c.sock)
	if err != nil {
		c.t.Errorf("deploytest: listen on %s: %v", c.sock, err)
		return
	}
	c.ln = ln
	go c.accept(ln)
}

// Cuts is how many times the connection was cut.
func (c *DockerCut) Cuts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cuts
}

func (c *DockerCut) accept(ln net.Listener) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return // cut, or the test ended
		}
		out, err := net.Dial(c.network, c.addr)
		if err != nil {
			in.Close()
			continue
		}
		if !c.track(ln, in, out) {
			continue
		}
		go c.pipe(out, in, true)
		go c.pipe(in, out, false)
	}
}

// track records a connection pair, unless the listener it came from was
// cut meanwhile (then it closes both).
func (c *DockerCut) track(ln net.Listener, in, out net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != ln {
		in.Close()
		out.Close()
		return false
	}
	c.conns[in], c.conns[out] = true, true
	return true
}

// pipe copies src to dst until either ends, closing both then; requests
// (toEngine) are looked at for an armed cut before they are passed on.
func (c *DockerCut) pipe(dst, src net.Conn, toEngine bool) {
	defer func() {
		c.mu.Lock()
		delete(c.conns, dst)
		delete(c.conns, src)
		c.mu.Unlock()
		dst.Close()
		src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && toEngine && c.cutOn(buf[:n]) {
			return
		}
		if n > 0 && toEngine && c.holdOn(buf[:n]) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or cut: either side ending ends both
		}
	}
}

// holdOn waits for Release or Drop when p is the request to hold; it
// reports whether the request is dropped.
func (c *DockerCut) holdOn(p []byte) bool {
	c.mu.Lock()
	if c.hold == nil || c.held == nil || !c.hold(p) {
		c.mu.Unlock()
		return false
	}
	held, release := c.held, c.release
	c.held = nil // one request only
	c.mu.Unlock()
	close(held)
	<-release
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropHeld
}

// cutOn cuts when p holds the armed request part.
func (c *DockerCut) cutOn(p []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed == nil || !bytes.Contains(p, c.armed) {
		return false
	}
	c.cutLocked()
	return true
}
