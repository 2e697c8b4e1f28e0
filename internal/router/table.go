package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Put adds route or replaces the service's hosts, port and target at once.
// A changed target takes effect immediately, without a health gate or a
// wait for the drain: Keystone uses it to reconcile, and Switch to deploy.
func (r *Router) Put(ctx context.Context, rt Route) (Route, error) {
	rt, err := rt.validate()
	if err != nil {
		return Route{}, err
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if err := r.checkClaims(rt); err != nil {
		return Route{}, err
	}
	if rt.Port != 0 { // bind first: a port in use must not be stored
		if err := r.ports.open(rt.Service, rt.Port); err != nil {
			return Route{}, err
		}
	}
	if err := r.state.save(r.snapshotWith(rt.Service, &rt)); err != nil {
		return Route{}, err
	}
	if err := r.apply(rt); err != nil {
		return Route{}, err
	}
	return rt, nil
}

// Delete removes a service's route; its in-flight requests finish.
func (r *Router) Delete(ctx context.Context, name string) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if _, err := r.Route(name); err != nil {
		return err
	}
	if err := r.state.save(r.snapshotWith(name, nil)); err != nil {
		return err
	}
	r.mu.Lock()
	s := r.services[name]
	for _, h := range s.route.Hosts {
		delete(r.hosts, h)
	}
	delete(r.services, name)
	r.mu.Unlock()
	r.ports.sync(r.Routes())
	return nil
}

// checkClaims refuses a host or port that another service holds.
func (r *Router) checkClaims(rt Route) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, h := range rt.Hosts {
		if s := r.hosts[h]; s != nil && s.route.Service != rt.Service {
			return fmt.Errorf("host %q: %w (%s)", h, ErrHostTaken, s.route.Service)
		}
	}
	if rt.Port != 0 {
		for _, s := range r.services {
			if s.route.Port == rt.Port && s.route.Service != rt.Service {
				return fmt.Errorf("port %d: %w (%s)", rt.Port, ErrPortTaken, s.route.Service)
			}
		}
	}
	return nil
}

// snapshotWith is the table with name's route replaced by rt (nil: removed).
func (r *Router) snapshotWith(name string, rt *Route) []Route {
	var out []Route
	for _, x := range r.Routes() {
		if x.Service != name {
			out = append(out, x)
		}
	}
	if rt != nil {
		out = append(out, *rt)
	}
	return out
}

// apply installs rt in the table, opening or closing port listeners as needed.
func (r *Router) apply(rt Route) error {
	if rt.Port != 0 {
		if err := r.ports.open(rt.Service, rt.Port); err != nil {
			return err
		}
	}
	r.mu.Lock()
	s := r.services[rt.Service]
	if s == nil {
		s = &service{}
		r.services[rt.Service] = s
	}
	for _, h := range s.route.Hosts {
		delete(r.hosts, h)
	}
	for _, h := range rt.Hosts {
		r.hosts[h] = s
	}
	old := s.current
	if old == nil || old.addr != rt.Target {
		s.current = newBackend(rt.Target)
	}
	s.route = rt
	r.mu.Unlock()
	if old != nil && old != s.current {
		old.startDrain()
	}
	r.ports.sync(r.Routes())
	return nil
}

// Switch moves service to req.Target: it waits for the new target to pass its
// health check (else ErrUnhealthy, nothing changed), swaps the target under
// the lock, then waits until the old target has no request in flight or
// DrainTimeout passes, and only then returns the counts.
func (r *Router) Switch(ctx context.Context, name string, req SwitchRequest) (SwitchResult, error) {
	if err := validTarget(req.Target); err != nil {
		return SwitchResult{}, err
	}
	r.mu.RLock()
	s := r.services[name]
	r.mu.RUnlock()
	if s == nil {
		return SwitchResult{}, fmt.Errorf("switch %q: %w", name, ErrNotFound)
	}
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	if err := healthGate(ctx, req); err != nil {
		return SwitchResult{}, fmt.Errorf("switch %s to %s: %w: %v", name, req.Target, ErrUnhealthy, err)
	}

	r.writeMu.Lock()
	rt, err := r.Route(name) // it may have changed or gone while we checked health
	if err != nil {
		r.writeMu.Unlock()
		return SwitchResult{}, err
	}
	rt.Target = req.Target
	// Swap first, then write the file: traffic moves without waiting for an
	// fsync, and the switch is reported done only once it is on disk.
	r.mu.Lock()
	old := s.current
	if old.addr != req.Target {
		s.current = newBackend(req.Target)
		// Count from the swap itself: a request finishing before drain()
		// runs below must be counted as drained, not lost.
		old.startDrain()
	}
	s.route = rt
	r.mu.Unlock()
	err = r.state.save(r.snapshotWith(name, &rt))
	r.writeMu.Unlock()
	if err != nil {
		return SwitchResult{}, fmt.Errorf("switch %s: traffic moved to %s but the route table was not saved: %w", name, req.Target, err)
	}

	res := SwitchResult{Previous: old.addr}
	if old == s.current {
		return res, nil
	}
	drain := req.DrainTimeout
	if drain <= 0 {
		drain = DefaultDrainTimeout
	}
	start := time.Now()
	res.Drained, res.Failed, res.DrainTimedOut = old.drain(ctx, drain)
	// Targets replaced earlier whose drain nobody waited out (a switch
	// whose caller died mid-drain) are waited for too: the caller stops
	// every target that is not current once this returns, and a request
	// still on one of those would be cut.
	var still []*backend
	if res.DrainTimedOut > 0 {
		still = append(still, old)
	}
	for _, b := range s.earlier {
		if b.addr == req.Target {
			continue // serving again: its requests finish where they are
		}
		_, _, left := b.drain(ctx, drain-time.Since(start))
		res.DrainTimedOut += left
		if left > 0 {
			still = append(still, b)
		}
	}
	s.earlier = still
	res.DrainMillis = time.Since(start).Milliseconds()
	r.log.Info("router: switched", "service", name, "from", old.addr, "to", req.Target,
		"drained", res.Drained, "failed", res.Failed, "drain_timed_out", res.DrainTimedOut, "drain_ms", res.DrainMillis)
	return res, nil
}

// healthGate polls the new target until it answers: its health path with a
// 2xx or 3xx, or, without a path, a TCP connection.
func healthGate(ctx context.Context, req SwitchRequest) error {
	timeout := req.HealthTimeout
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var last error
	for {
		last = probe(ctx, client, req)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func probe(ctx context.Context, client *http.Client, req SwitchRequest) error {
	if req.HealthPath == "" {
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", req.Target)
		if err != nil {
			return err
		}
		return c.Close()
	}
	path := req.HealthPath
	if path[0] != '/' {
		path = "/" + path
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+req.Target+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(hr)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s answered %d", path, resp.StatusCode)
	}
	return nil
}

// backend is one target and the requests in flight on it.
type backend struct {
	addr string

	mu       sync.Mutex
	inflight int64
	draining bool
	drained  int64
	failed   int64
	idle     chan struct{} // closed when draining with nothing in flight
}

func newBackend(addr string) *backend { return &backend{addr: addr, idle: make(chan struct{})} }

func (b *backend) acquire() {
	b.mu.Lock()
	b.inflight++
	b.mu.Unlock()
}

func (b *backend) release(failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight--
	if !b.draining {
		return
	}
	if failed {
		b.failed++
	} else {
		b.drained++
	}
	if b.inflight == 0 {
		close(b.idle)
	}
}

// startDrain marks b replaced: from now on completions are counted.
func (b *backend) startDrain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.draining {
		return
	}
	b.draining = true
	if b.inflight == 0 {
		close(b.idle)
	}
}

// drain starts the drain and waits for it, at most timeout (or ctx).
func (b *backend) drain(ctx context.Context, timeout time.Duration) (drained, failed, timedOut int64) {
	b.startDrain()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-b.idle:
	case <-t.C:
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.drained, b.failed, b.inflight
}

// retryTransport retries once, on the service's current target, a request
// whose connection could not be made, when it is idempotent and has no body:
// nothing reached the app, so trying again cannot repeat an effect.
type retryTransport struct {
	base   http.RoundTripper
	router *Router
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil || !isDialError(err) || !idempotent(req.Method) || (req.Body != nil && req.Body != http.NoBody) {
		return resp, err
	}
	st, _ := req.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		return resp, err
	}
	t.router.mu.RLock()
	next := st.svc.current.addr
	t.router.mu.RUnlock()
	retry := req.Clone(req.Context())
	retry.URL.Host = next
	return t.base.RoundTrip(retry)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func idempotent(method string) bool {
	return slices.Contains([]string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete}, method)
}
