package router_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routertest"
)

// FuzzHost: whatever Host a client sends, the router answers 200 (the routed
// name), 400 or 404, never panics, and never echoes markup.
func FuzzHost(f *testing.F) {
	for _, seed := range []string{"web.example.com", "WEB.example.com:80", "", "[::1]:80", "web.example.com.", "<b>", strings.Repeat("a.", 300), "xn--bcher-kva.example", "web.example.com:99999", "%00"} {
		f.Add(seed)
	}
	r, err := router.New(router.Options{StateDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	web := routertest.NewBackend(f, "web")
	if _, err := r.Put(f.Context(), router.Route{Service: "web", Hosts: []string{"web.example.com"}, Target: web.Addr()}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Fatalf("Host %q: status %d", host, rec.Code)
		}
		if rec.Code == http.StatusOK && !r.HasHost(host) {
			t.Fatalf("Host %q reached an app without being routed", host)
		}
		if strings.Contains(rec.Body.String(), "<b>") || strings.Contains(rec.Body.String(), "<script") {
			t.Fatalf("Host %q: markup echoed: %q", host, rec.Body.String())
		}
	})
}
