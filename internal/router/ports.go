package router

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// portListeners are the IP-mode listeners: one per service with a Port,
// serving that service whatever the Host header says.
type portListeners struct {
	host   string
	router *Router

	mu      sync.Mutex
	servers map[int]*portServer
}

type portServer struct {
	service string
	srv     *http.Server
}

func newPortListeners(host string, r *Router) *portListeners {
	return &portListeners{host: host, router: r, servers: map[int]*portServer{}}
}

// open makes sure port is listened on for service (binding it now, so that a
// port already in use is an error before the route is stored).
func (p *portListeners) open(service string, port int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.servers[port]; ok {
		s.service = service
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen on port %d for %s: %w", port, service, err)
	}
	ps := &portServer{service: service}
	ps.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			p.mu.Lock()
			name := ps.service
			p.mu.Unlock()
			p.router.servePort(name, w, req)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	p.servers[port] = ps
	go func() {
		if err := ps.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.router.log.Error("router: port listener stopped", "port", port, "err", err)
		}
	}()
	return nil
}

// sync closes the listeners of ports no route holds any more.
func (p *portListeners) sync(routes []Route) {
	want := map[int]bool{}
	for _, r := range routes {
		if r.Port != 0 {
			want[r.Port] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, s := range p.servers {
		if !want[port] {
			s.srv.Close()
			delete(p.servers, port)
		}
	}
}

func (p *portListeners) closeAll() error {
	p.sync(nil)
	return nil
}
