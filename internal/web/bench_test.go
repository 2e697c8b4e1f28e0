package web_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/server"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/users"
	"github.com/keystone-app/keystone/internal/web"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

// BenchmarkPages measures the server time of the apps overview and of an
// app page with 100 apps × 1000 deployments each, signed in as a deployer
// (whose app page also reads the rollback targets). It reports the 50th
// and 99th percentiles of the individual requests (target: p99 < 20 ms):
//
//	go test -run '^$' -bench BenchmarkPages -benchtime 2000x ./internal/web/
func BenchmarkPages(b *testing.B) {
	ctx := b.Context()
	st, err := store.Open(ctx, storetest.Fresh(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	seeded := time.Now()
	if err := storetest.SeedHistory(ctx, st.Pool(), 100, 1000); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded 100 apps × 1000 deployments in %s", time.Since(seeded).Round(time.Millisecond))
	dir, err := users.NewDirectory(st, cheapParams)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := dir.Add(ctx, "bench", users.NewUser{Name: "dee", Role: store.RoleDeployer, Password: "dee-password-1"}); err != nil {
		b.Fatal(err)
	}
	keys, err := secrets.NewKeyring([]config.EncryptionKey{{ID: "bench", Key: make([]byte, 32)}})
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	public, _ := url.Parse("http://keystone.example")
	h, err := web.New(web.Options{Store: st, Accounts: dir, Logger: logger, PublicURL: public,
		Requester: &webtest.Requester{Store: st}, Secrets: secrets.New(st, keys),
		Containers: webtest.Containers{Container: web.ContainerState{State: "running", StartedAt: time.Now(), Image: "img",
			Output: []string{"listening on :8080"}}}})
	if err != nil {
		b.Fatal(err)
	}
	router := server.NewRouter(server.RouterConfig{Logger: logger, Gatherer: prometheus.NewRegistry()})
	h.Mount(router)
	cookies := benchSignIn(b, router)

	for _, page := range []struct{ name, path string }{
		{"overview", "/"},
		{"app", "/apps/bench/repo-050/web"},
	} {
		b.Run(page.name, func(b *testing.B) {
			times := make([]time.Duration, 0, b.N)
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, page.path, nil)
				for _, c := range cookies {
					req.AddCookie(c)
				}
				rec := httptest.NewRecorder()
				start := time.Now()
				router.ServeHTTP(rec, req)
				times = append(times, time.Since(start))
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s = %d", page.path, rec.Code)
				}
			}
			slices.Sort(times)
			pct := func(p float64) float64 {
				return float64(times[min(int(float64(len(times))*p), len(times)-1)].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

// benchSignIn signs dee in through the real form and returns the cookies.
func benchSignIn(b *testing.B, router http.Handler) []*http.Cookie {
	b.Helper()
	rec := httptest.NewRecorder()
	router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/login", nil))
	m := csrfPattern.FindStringSubmatch(rec.Body.String())
	if m == nil {
		b.Fatal("no CSRF token on /login")
	}
	form := url.Values{"csrf_token": {m[1]}, "name": {"dee"}, "password": {"dee-password-1"}}
	req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	router.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		b.Fatalf("sign in: %d %s", rec.Code, rec.Body)
	}
	var out []*http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == "keystone_session" {
			out = append(out, c)
		}
	}
	return out
}
