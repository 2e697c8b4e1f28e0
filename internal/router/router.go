// Package router is Keystone's data plane (SPEC §13): it sends each request to
// the target of the service its Host (or its listener's port) names, moves a
// service to a new target after a health gate, and drains the requests still
// in flight on the old one before reporting the switch done.
//
// Requests only take a read lock to find their target; a switch swaps the
// target under the write lock, so every request after the swap goes to the
// new target and every request before it is counted on the old one until it
// finishes. The route table is written to a file after every change and read
// back by New, so a restarted router serves what it served before.
package router

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Router routes requests to services. Use New.
type Router struct {
	log   *slog.Logger
	state *stateFile
	proxy *httputil.ReverseProxy
	ports *portListeners
	// rejects counts and logs what the router refuses itself.
	rejects *rejections

	// writeMu serialises changes to the table (and the state file), so that
	// each write holds every earlier change; requests never take it.
	writeMu sync.Mutex

	mu       sync.RWMutex // guards the maps and each service's current backend
	services map[string]*service
	hosts    map[string]*service
}

// service is a route plus the backend serving it now.
type service struct {
	route    Route
	current  *backend
	switchMu sync.Mutex // one switch of this service at a time
	// earlier are targets replaced by earlier switches whose requests were
	// still in flight when those switches returned (their caller hung up,
	// or the drain timed out); under switchMu.
	earlier []*backend

	requests atomic.Int64
	failures atomic.Int64
}

// Options configure New.
type Options struct {
	// StateDir holds routes.json; created if missing.
	StateDir string
	// PortHost is the address IP-mode port listeners bind ("" = every
	// interface, as an app's published host port would be).
	PortHost string
	Logger   *slog.Logger
	// RejectLogEvery is the window of the refusals' summary lines (default
	// one second).
	RejectLogEvery time.Duration
}

// New returns a Router serving the routes stored under opts.StateDir.
func New(opts Options) (*Router, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := openState(opts.StateDir)
	if err != nil {
		return nil, err
	}
	r := &Router{log: log, state: st, services: map[string]*service{}, hosts: map[string]*service{},
		rejects: newRejections(log, opts.RejectLogEvery)}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    &retryTransport{base: newTransport(), router: r},
		ErrorHandler: r.proxyError,
		BufferPool:   &bufferPool{},
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	r.ports = newPortListeners(opts.PortHost, r)
	routes, err := st.load()
	if err != nil {
		return nil, err
	}
	for _, rt := range routes {
		if err := r.apply(rt); err != nil {
			return nil, fmt.Errorf("restore route %s from %s: %w", rt.Service, st.path, err)
		}
	}
	log.Info("router: routes restored", "count", len(routes), "file", st.path)
	return r, nil
}

// Close stops the IP-mode listeners. In-flight requests on them are not waited for.
func (r *Router) Close() error { return r.ports.closeAll() }

func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1000,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // slow apps are the app's business
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
}

// ServeHTTP routes by Host: an unknown host gets 404 and a short page, a
// malformed one 400.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	host, ok := NormalizeHost(req.Host)
	if !ok {
		r.rejects.note(RejectMalformedHost, req.Host)
		http.Error(w, "400 bad request: malformed Host", http.StatusBadRequest)
		return
	}
	r.mu.RLock()
	svc := r.hosts[host]
	r.serveLocked(w, req, svc, host)
}

// servePort serves a request that arrived on name's own port (IP mode).
func (r *Router) servePort(name string, w http.ResponseWriter, req *http.Request) {
	r.mu.RLock()
	r.serveLocked(w, req, r.services[name], req.Host)
}

// serveLocked is entered holding r.mu's read lock and releases it once the
// request is counted on its backend, so a switch cannot slip between the
// lookup and the count.
func (r *Router) serveLocked(w http.ResponseWriter, req *http.Request, svc *service, host string) {
	if svc == nil {
		r.mu.RUnlock()
		r.rejects.note(RejectUnknownHost, host)
		notFound(w, host)
		return
	}
	b := svc.current
	b.acquire()
	r.mu.RUnlock()
	svc.requests.Add(1)
	st := &reqState{svc: svc, backend: b}
	r.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), stateKey{}, st)))
	if st.failed {
		svc.failures.Add(1)
	}
	b.release(st.failed)
}

type stateKey struct{}

// reqState travels with a proxied request.
type reqState struct {
	svc     *service
	backend *backend
	failed  bool // the proxy answered 502 itself
}

func rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*reqState)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = st.backend.addr
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
}

func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	st := req.Context().Value(stateKey{}).(*reqState)
	if errors.Is(err, context.Canceled) && req.Context().Err() != nil {
		return // the client went away: not the proxy's failure
	}
	st.failed = true
	r.log.Warn("router: upstream failed", "service", st.svc.route.Service, "target", st.backend.addr, "err", err)
	w.WriteHeader(http.StatusBadGateway)
}

func notFound(w http.ResponseWriter, host string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprintf(w, "<!doctype html><title>404 not found</title><h1>404 not found</h1><p>No app is served at %s.</p>\n", html.EscapeString(host))
}

// Routes lists every route, sorted by service.
func (r *Router) Routes() []Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Route, 0, len(r.services))
	for _, s := range r.services {
		out = append(out, s.route)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// Route returns the route of service.
func (r *Router) Route(name string) (Route, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.services[name]
	if !ok {
		return Route{}, fmt.Errorf("route %q: %w", name, ErrNotFound)
	}
	return s.route, nil
}

// HasHost reports whether host names a route (the certificate decision).
func (r *Router) HasHost(host string) bool {
	h, ok := NormalizeHost(host)
	if !ok {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.hosts[h] != nil
}

// Stats are a service's request counters since the router started.
type Stats struct {
	Service  string
	Requests int64
	Failures int64
}

// Stats lists every service's counters.
func (r *Router) Stats() []Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Stats, 0, len(r.services))
	for name, s := range r.services {
		out = append(out, Stats{Service: name, Requests: s.requests.Load(), Failures: s.failures.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// bufferPool reuses the 32 KiB copy buffers ReverseProxy would otherwise
// allocate for every response body.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// RedirectHTTPS is the plain-HTTP handler beside an HTTPS listener: a routed
// host is sent to the same URL over https (308, keeping the method); any
// other host gets the same 400 or 404 as over https, so that the redirect
// never advertises a name the router does not serve.
func (r *Router) RedirectHTTPS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		host, ok := NormalizeHost(req.Host)
		if !ok || !r.HasHost(host) {
			r.ServeHTTP(w, req) // answers 400 or the 404 page
			return
		}
		http.Redirect(w, req, "https://"+host+req.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
