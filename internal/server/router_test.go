package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/server"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func get(t *testing.T, h http.Handler, path, remote, auth string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = remote
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestProbes(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.SharedURL(t))
	if err != nil {
		t.Fatal(err)
	}
	router := server.NewRouter(server.RouterConfig{
		Logger:   discardLogger(),
		Ready:    []server.Check{{Name: "database", Check: st.Ping}},
		Gatherer: prometheus.NewRegistry(),
	})
	if rec := get(t, router, "/healthz", "127.0.0.1:1", ""); rec.Code != 200 {
		t.Fatalf("/healthz = %d", rec.Code)
	}
	if rec := get(t, router, "/readyz", "127.0.0.1:1", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"database":"ok"`) {
		t.Fatalf("/readyz with database up = %d %s", rec.Code, rec.Body)
	}
	st.Close()
	if rec := get(t, router, "/readyz", "127.0.0.1:1", ""); rec.Code != 503 || !strings.Contains(rec.Body.String(), `"database":"unavailable"`) {
		t.Fatalf("/readyz with database down = %d %s", rec.Code, rec.Body)
	}
	if rec := get(t, router, "/healthz", "127.0.0.1:1", ""); rec.Code != 200 {
		t.Fatalf("/healthz with database down = %d (the process is up)", rec.Code)
	}
}

func TestReadyzReportsEachCheck(t *testing.T) {
	router := server.NewRouter(server.RouterConfig{
		Logger: discardLogger(),
		Ready: []server.Check{
			{Name: "database", Check: func(context.Context) error { return nil }},
			{Name: "docker", Check: func(context.Context) error { return errors.New("no engine") }},
		},
		Gatherer: prometheus.NewRegistry(),
	})
	rec := get(t, router, "/readyz", "127.0.0.1:1", "")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"docker":"unavailable"`) || strings.Contains(rec.Body.String(), "no engine") {
		t.Fatalf("/readyz = %d %s", rec.Code, rec.Body)
	}
}

func TestMetricsAccess(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "keystone_test_total", Help: "t"}))
	open := server.NewRouter(server.RouterConfig{Logger: discardLogger(), Gatherer: reg})
	guarded := server.NewRouter(server.RouterConfig{Logger: discardLogger(), Gatherer: reg, MetricsToken: "tok-123"})
	cases := []struct {
		name         string
		router       http.Handler
		remote, auth string
		code         int
	}{
		{"no token, loopback v4", open, "127.0.0.1:5000", "", 200},
		{"no token, loopback v6", open, "[::1]:5000", "", 200},
		{"no token, remote", open, "203.0.113.9:5000", "", 403},
		{"token, right", guarded, "203.0.113.9:5000", "Bearer tok-123", 200},
		{"token, wrong", guarded, "127.0.0.1:5000", "Bearer nope", 401},
		{"token, missing even on loopback", guarded, "127.0.0.1:5000", "", 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := get(t, c.router, "/metrics", c.remote, c.auth)
			if rec.Code != c.code {
				t.Fatalf("got %d, want %d", rec.Code, c.code)
			}
			if c.code == 200 && !strings.Contains(rec.Body.String(), "keystone_test_total") {
				t.Fatalf("metrics body lacks the counter: %s", rec.Body)
			}
		})
	}
}

// TestSecurityHeadersOnEveryAnswer: SPEC §9's headers are on every answer of
// the router, including probes, refusals, 404s and routes mounted later.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	router := server.NewRouter(server.RouterConfig{Logger: discardLogger(), Gatherer: prometheus.NewRegistry()})
	router.GET("/mounted-later", func(c *gin.Context) { c.String(http.StatusOK, "later") })
	cases := []struct {
		path, remote string
		status       int
	}{
		{"/healthz", "127.0.0.1:1", http.StatusOK},
		{"/readyz", "127.0.0.1:1", http.StatusOK},
		{"/metrics", "192.0.2.1:1", http.StatusForbidden},
		{"/no-such-page", "127.0.0.1:1", http.StatusNotFound},
		{"/mounted-later", "127.0.0.1:1", http.StatusOK},
	}
	for _, tc := range cases {
		rec := get(t, router, tc.path, tc.remote, "")
		if rec.Code != tc.status {
			t.Errorf("GET %s = %d, want %d", tc.path, rec.Code, tc.status)
		}
		h := rec.Header()
		if h.Get("Content-Security-Policy") != server.ContentSecurityPolicy ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s headers: %v", tc.path, h)
		}
	}
}

// TestHSTSUnderHTTPS: Strict-Transport-Security on every answer when the
// public URL is https, on none when it is http (a browser would then refuse
// the plain-http Keystone for two years).
func TestHSTSUnderHTTPS(t *testing.T) {
	for hsts, want := range map[bool]string{true: server.HSTSValue, false: ""} {
		router := server.NewRouter(server.RouterConfig{Logger: discardLogger(), Gatherer: prometheus.NewRegistry(), HSTS: hsts})
		router.GET("/mounted-later", func(c *gin.Context) { c.String(http.StatusOK, "later") })
		for _, path := range []string{"/healthz", "/no-such-page", "/mounted-later"} {
			if got := get(t, router, path, "127.0.0.1:1", "").Header().Get("Strict-Transport-Security"); got != want {
				t.Errorf("HSTS=%v GET %s: Strict-Transport-Security %q, want %q", hsts, path, got, want)
			}
		}
	}
}

// TestClientAddressBehindProxies: X-Forwarded-For names the client only when
// the request comes from a configured proxy, so that the sign-in throttle and
// the audit trail see real clients behind a proxy and a client cannot pick
// its own address; and a local proxy does not open /metrics to the world.
func TestClientAddressBehindProxies(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	routers := map[string]*gin.Engine{
		"none":    server.NewRouter(server.RouterConfig{Logger: discardLogger(), Gatherer: prometheus.NewRegistry()}),
		"proxies": server.NewRouter(server.RouterConfig{Logger: discardLogger(), Gatherer: prometheus.NewRegistry(), TrustedProxies: proxies}),
	}
	for _, r := range routers {
		r.GET("/whoami", func(c *gin.Context) { c.String(http.StatusOK, c.ClientIP()) })
	}
	cases := []struct {
		router, remote, forwarded string
		client                    string
		metrics                   int
	}{
		{"none", "203.0.113.9:5000", "127.0.0.1", "203.0.113.9", 403},
		{"none", "127.0.0.1:5000", "203.0.113.9", "127.0.0.1", 200},
		{"proxies", "127.0.0.1:5000", "203.0.113.9", "203.0.113.9", 403},
		{"proxies", "10.1.1.1:5000", "198.51.100.7, 10.2.2.2", "198.51.100.7", 403},
		{"proxies", "127.0.0.1:5000", "", "127.0.0.1", 200},
		{"proxies", "203.0.113.9:5000", "127.0.0.1", "203.0.113.9", 403},
	}
	for _, c := range cases {
		t.Run(c.router+" "+c.remote+" for "+c.forwarded, func(t *testing.T) {
			for path, want := range map[string]int{"/whoami": 200, "/metrics": c.metrics} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.RemoteAddr = c.remote
				if c.forwarded != "" {
					req.Header.Set("X-Forwarded-For", c.forwarded)
				}
				rec := httptest.NewRecorder()
				routers[c.router].ServeHTTP(rec, req)
				if rec.Code != want {
					t.Fatalf("%s: %d, want %d", path, rec.Code, want)
				}
				if path == "/whoami" && rec.Body.String() != c.client {
					t.Fatalf("client %q, want %s", rec.Body, c.client)
				}
			}
		})
	}
}
