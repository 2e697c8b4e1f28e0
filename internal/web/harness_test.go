package web_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/server"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/users"
	"github.com/keystone-app/keystone/internal/web"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// site is a status page on its own fresh database, served by the real
// router (with its security headers) over real HTTP.
type site struct {
	t         *testing.T
	store     *store.Store
	dir       *users.Directory
	logs      syncBuffer // everything the status page logged
	srv       *httptest.Server
	handler   http.Handler   // the router, for requests from chosen addresses
	routes    gin.RoutesInfo // the status page's own routes, as Mount registers them
	stopRun   func()         // ends the handler's Run, as SIGTERM does
	requester *webtest.Requester
	secrets   *secrets.Service
	// seeded rows
	app                          store.App
	first, serving, failed, live store.Deployment
}

// Users of every site: name, role and password.
var siteUsers = []struct{ name, role, password string }{
	{"ada", store.RoleAdmin, "ada-password-1"},
	{"dee", store.RoleDeployer, "dee-password-1"},
	{"vic", store.RoleViewer, "vic-password-1"},
}

func password(name string) string {
	for _, u := range siteUsers {
		if u.name == name {
			return u.password
		}
	}
	return ""
}

// cheapParams keep password hashing fast in tests; the format and the code
// path are the production ones.
var cheapParams = users.Params{MemoryKiB: 64, Time: 1, Threads: 1}

// newSite starts a status page with the test seams, users and one app with
// history. opts may change the Options before the handler is built.
func newSite(t *testing.T, opts ...func(*web.Options)) *site {
	t.Helper()
	return startSite(t, true, opts...)
}

// newBareSite is newSite without any app.
func newBareSite(t *testing.T, opts ...func(*web.Options)) *site {
	t.Helper()
	return startSite(t, false, opts...)
}

func startSite(t *testing.T, seed bool, opts ...func(*web.Options)) *site {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	dir, err := users.NewDirectory(st, cheapParams)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range siteUsers {
		if _, err := dir.Add(ctx, "test", users.NewUser{Name: u.name, Role: u.role, Password: u.password}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := secrets.NewKeyring([]config.EncryptionKey{{ID: "test", Key: bytes.Repeat([]byte{7}, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, store: st, dir: dir, requester: &webtest.Requester{Store: st}, secrets: secrets.New(st, keys)}
	if seed {
		s.seed()
	}
	logger := slog.New(slog.NewTextHandler(&s.logs, nil))
	// The listener exists before the handler, so that Keystone's public URL
	// can be the test server's.
	s.srv = httptest.NewUnstartedServer(nil)
	o := web.Options{
		Store: st, Accounts: dir, Requester: s.requester, Secrets: s.secrets, Logger: logger,
		Containers: webtest.Containers{Container: web.ContainerState{State: "running", Image: "keystone/acme-shop-web:abc",
			StartedAt: time.Now().Add(-time.Hour), Output: []string{"listening on :8080", "\x1b[31mGET /healthz 200\x1b[0m"}}},
		GitHubWebURL: "https://github.example", Apps: appurl.Config{AppHost: "apps.example"}, PollInterval: 20 * time.Millisecond,
	}
	o.PublicURL, _ = url.Parse("http://" + s.srv.Listener.Addr().String())
	for _, f := range opts {
		f(&o)
	}
	h, err := web.New(o)
	if err != nil {
		t.Fatal(err)
	}
	router := server.NewRouter(server.RouterConfig{Logger: logger, Gatherer: prometheus.NewRegistry()})
	h.Mount(router)
	own := gin.New()
	h.Mount(own)
	s.routes = own.Routes()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.Run(runCtx); close(done) }()
	s.stopRun = func() { stop(); <-done }
	s.handler = router
	s.srv.Config.Handler = router
	s.srv.Start()
	t.Cleanup(func() {
		stop()
		<-done
		s.srv.Close()
	})
	return s
}

// seed creates acme/shop/web with a succeeded, a serving, a failed and a
// running deployment; the serving one has a log with markup and escapes.
func (s *site) seed() {
	t, ctx, db := s.t, s.t.Context(), s.store.Pool()
	var err error
	s.app, err = storetest.AddApp(ctx, db, store.App{Owner: "acme", Repo: "shop", Name: "web", HostPort: 9001})
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(-time.Hour)
	add := func(d store.Deployment) store.Deployment {
		d.AppID = s.app.ID
		got, err := storetest.AddDeployment(ctx, db, d)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	fin := hour.Add(12 * time.Second)
	s.first = add(store.Deployment{Kind: store.KindDeploy, SHA: strings.Repeat("a", 40), State: store.StateSucceeded,
		Description: "Deployed in 12.0s", HealthStatus: 200, HealthMS: 800, QueuedAt: hour, StartedAt: &hour, FinishedAt: &fin})
	s.serving = add(store.Deployment{SHA: strings.Repeat("b", 40), State: store.StateSucceeded, Description: "Deployed in 12.0s",
		HealthStatus: 200, HealthMS: 900, QueuedAt: hour, StartedAt: &hour, FinishedAt: &fin})
	s.failed = add(store.Deployment{SHA: strings.Repeat("c", 40), State: store.StateFailed, Actor: "mallory",
		Description: "Health check failed: GET /healthz 500 after 30s; bbbbbbb still serving", HealthStatus: 500,
		HealthError: "GET /healthz 500", QueuedAt: hour, StartedAt: &hour, FinishedAt: &fin})
	s.live = add(store.Deployment{SHA: strings.Repeat("d", 40), State: store.StateRunning, Step: "build",
		Description: "Building ddddddd", QueuedAt: hour, StartedAt: &hour})
	err = storetest.AddLogLines(ctx, db, s.serving.ID, "Step 1/3 : FROM scratch",
		"<script>alert('log')</script>", "\x1b[1;32mSuccessfully built\x1b[0m abc \x1b]0;title\x07done")
	if err != nil {
		t.Fatal(err)
	}
	if err := storetest.AddLogLines(ctx, db, s.live.ID, "fetching", "building"); err != nil {
		t.Fatal(err)
	}
	err = storetest.AddStep(ctx, db, s.serving.ID, store.DeploymentStep{Position: 1, Name: "fetch", StartedAt: hour, FinishedAt: &fin})
	if err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// client is a browser-like HTTP client with a cookie jar that does not
// follow redirects, so tests see each answer.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (s *site) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: s.t, base: s.srv.URL, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   string
}

// from returns a client whose requests go straight to the router from the
// given client address (the server sees every network client as 127.0.0.1).
func (s *site) from(addr string) *client {
	c := s.client()
	c.hc.Transport = handlerTransport{h: s.handler, remote: addr}
	return c
}

type handlerTransport struct {
	h      http.Handler
	remote string
}

func (tr handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req.RemoteAddr = tr.remote
	rec := httptest.NewRecorder()
	tr.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

func (c *client) do(req *http.Request) response {
	c.t.Helper()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// get fetches path as a browser navigation (Accept: text/html).
func (c *client) get(path string) response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	return c.do(req)
}

func (c *client) post(path string, form url.Values) response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

var csrfPattern = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf returns the CSRF token of the page at path.
func (c *client) csrf(path string) string {
	c.t.Helper()
	r := c.get(path)
	m := csrfPattern.FindStringSubmatch(r.body)
	if m == nil {
		c.t.Fatalf("no CSRF token on %s (HTTP %d)", path, r.status)
	}
	return m[1]
}

// login signs in as name with its site password and fails the test if that
// does not work.
func (c *client) login(name string) {
	c.t.Helper()
	r := c.post("/login", url.Values{"csrf_token": {c.csrf("/login")}, "name": {name}, "password": {password(name)}, "next": {"/"}})
	if r.status != http.StatusSeeOther {
		c.t.Fatalf("sign in as %s: HTTP %d\n%s", name, r.status, r.body)
	}
}

// signedIn returns a client signed in as name (or anonymous for "").
func (s *site) signedIn(name string) *client {
	c := s.client()
	if name != "" {
		c.login(name)
	}
	return c
}

// audit returns the site's audit events, oldest first.
func (s *site) audit() []store.AuditEvent {
	s.t.Helper()
	events, err := s.store.AuditPage(s.t.Context(), 0, 1000)
	if err != nil {
		s.t.Fatal(err)
	}
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	return events
}

// hasAudit reports whether an event with the action, actor and target exists.
func (s *site) hasAudit(action, actor, target string) bool {
	for _, e := range s.audit() {
		if e.Action == action && e.Actor == actor && (target == "" || e.Target == target) {
			return true
		}
	}
	return false
}

func (s *site) appPath() string { return "/apps/acme/shop/web" }

// settle ends every unfinished deployment of the app (as failed), so that a
// redeploy is not refused for one under way.
func (s *site) settle() {
	s.t.Helper()
	ds, err := s.store.UnfinishedDeployments(s.t.Context(), s.app.ID)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, d := range ds {
		if err := storetest.FinishDeployment(s.t.Context(), s.store.Pool(), d.ID, store.StateFailed, "settled by the test"); err != nil {
			s.t.Fatal(err)
		}
	}
}
