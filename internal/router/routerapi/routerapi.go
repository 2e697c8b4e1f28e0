// Package routerapi is the admin API of `keystone proxy`, served on a Unix
// socket only (KEYSTONE_PROXY_ADMIN), and the client `keystone serve` uses.
//
//	GET    /healthz                   200 {"ok":true,"routes":N}
//	GET    /routes                    every route
//	GET    /routes/{service}          one route (404 when unknown)
//	PUT    /routes/{service}          add or replace {hosts, port, target}
//	DELETE /routes/{service}          remove it
//	POST   /routes/{service}/switch   {target, health_path, health_timeout, drain_timeout}:
//	                                  answers after the drain with {previous, drained, failed, drain_timed_out, drain_ms}
//	GET    /certificates              every routed host's certificate: issuer, expiry, last error
//	GET    /metrics                   Prometheus text
//
// Errors are {"error": "..."} with 400 (bad input), 404, 409 (a host or port
// another service holds) or 422 (the new target failed its health check).
package routerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/certs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Router is what the API drives.
type Router interface {
	Routes() []router.Route
	Route(name string) (router.Route, error)
	Put(ctx context.Context, rt router.Route) (router.Route, error)
	Delete(ctx context.Context, name string) error
	Switch(ctx context.Context, name string, req router.SwitchRequest) (router.SwitchResult, error)
	Stats() []router.Stats
	Rejected() map[string]int64
}

// Certificates lists certificate state; nil when TLS is off.
type Certificates interface{ Certificates() []certs.Info }

// SwitchBody is POST /routes/{service}/switch's body; durations are Go
// duration strings ("30s").
type SwitchBody struct {
	Target        string `json:"target"`
	HealthPath    string `json:"health_path,omitempty"`
	HealthTimeout string `json:"health_timeout,omitempty"`
	DrainTimeout  string `json:"drain_timeout,omitempty"`
}

// RouteBody is PUT /routes/{service}'s body.
type RouteBody struct {
	Hosts  []string `json:"hosts,omitempty"`
	Port   int      `json:"port,omitempty"`
	Target string   `json:"target"`
}

// Handler serves the API. certs may be nil.
func Handler(r Router, cs Certificates) http.Handler {
	h := &handler{r: r, certs: cs}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{r: r, certs: cs})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"ok": true, "routes": len(r.Routes())})
	})
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, r.Routes()) })
	mux.HandleFunc("GET /routes/{service}", h.get)
	mux.HandleFunc("PUT /routes/{service}", h.put)
	mux.HandleFunc("DELETE /routes/{service}", h.delete)
	mux.HandleFunc("POST /routes/{service}/switch", h.switchRoute)
	mux.HandleFunc("GET /certificates", h.certificates)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

type handler struct {
	r     Router
	certs Certificates
}

func (h *handler) get(w http.ResponseWriter, req *http.Request) {
	rt, err := h.r.Route(req.PathValue("service"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, rt)
}

func (h *handler) put(w http.ResponseWriter, req *http.Request) {
	var body RouteBody
	if !readJSON(w, req, &body) {
		return
	}
	rt, err := h.r.Put(req.Context(), router.Route{Service: req.PathValue("service"), Hosts: body.Hosts, Port: body.Port, Target: body.Target})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, rt)
}

func (h *handler) delete(w http.ResponseWriter, req *http.Request) {
	if err := h.r.Delete(req.Context(), req.PathValue("service")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) switchRoute(w http.ResponseWriter, req *http.Request) {
	var body SwitchBody
	if !readJSON(w, req, &body) {
		return
	}
	sr := router.SwitchRequest{Target: body.Target, HealthPath: body.HealthPath}
	for _, d := range []struct {
		name, value string
		into        *time.Duration
	}{{"health_timeout", body.HealthTimeout, &sr.HealthTimeout}, {"drain_timeout", body.DrainTimeout, &sr.DrainTimeout}} {
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil || v < 0 || v > time.Hour {
			writeJSON(w, 400, map[string]string{"error": fmt.Sprintf("%s: %q is not a duration from 0s to 1h", d.name, d.value)})
			return
		}
		*d.into = v
	}
	res, err := h.r.Switch(req.Context(), req.PathValue("service"), sr)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, res)
}

func (h *handler) certificates(w http.ResponseWriter, _ *http.Request) {
	list := []certs.Info{}
	if h.certs != nil {
		list = h.certs.Certificates()
	}
	writeJSON(w, 200, list)
}

func readJSON(w http.ResponseWriter, req *http.Request, into any) bool {
	dec := json.NewDecoder(io.LimitReader(req.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		writeJSON(w, 400, map[string]string{"error": "body: " + err.Error()})
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, router.ErrNotFound):
		code = 404
	case errors.Is(err, router.ErrBadRoute):
		code = 400
	case errors.Is(err, router.ErrHostTaken), errors.Is(err, router.ErrPortTaken):
		code = 409
	case errors.Is(err, router.ErrUnhealthy):
		code = 422
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// collector reads the router's counters and certificate state at scrape time.
type collector struct {
	r     Router
	certs Certificates
}

var (
	descRoutes   = prometheus.NewDesc("keystone_router_routes", "Services in the route table.", nil, nil)
	descRequests = prometheus.NewDesc("keystone_router_requests_total", "Requests routed to a service.", []string{"service"}, nil)
	descFailures = prometheus.NewDesc("keystone_router_upstream_failures_total", "Requests the router answered 502 because the target failed.", []string{"service"}, nil)
	descExpiry   = prometheus.NewDesc("keystone_router_certificate_expiry_timestamp_seconds", "Expiry of a host's stored certificate.", []string{"host", "issuer"}, nil)
	descRefused  = prometheus.NewDesc("keystone_router_refused_total", "Requests and TLS handshakes the router refused itself (malformed or unknown Host, unknown SNI).", []string{"reason"}, nil)
	descCertErr  = prometheus.NewDesc("keystone_router_certificate_error", "1 when the last attempt to get a host's certificate failed.", []string{"host"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRoutes, descRequests, descFailures, descRefused, descExpiry, descCertErr} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	stats := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(descRoutes, prometheus.GaugeValue, float64(len(stats)))
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(s.Requests), s.Service)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.Failures), s.Service)
	}
	for reason, n := range c.r.Rejected() {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(n), reason)
	}
	if c.certs == nil {
		return
	}
	for _, ci := range c.certs.Certificates() {
		if !ci.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, float64(ci.NotAfter.Unix()), ci.Host, ci.Issuer)
		}
		v := 0.0
		if ci.LastError != "" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descCertErr, prometheus.GaugeValue, v, ci.Host)
	}
}
