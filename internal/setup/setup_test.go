package setup_test

import (
	"context"
	"html"
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

	"github.com/gin-gonic/gin"

	"github.com/keystone-app/keystone"
	"github.com/keystone-app/keystone/internal/audit"
	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/secrets"
	"github.com/keystone-app/keystone/internal/setup"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/users"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// env is a setup served over real HTTP on its own fresh database, against
// the fake GitHub, with a browser-like client (cookies, no automatic
// redirects, so each hop is checked).
type env struct {
	t       *testing.T
	st      *store.Store
	keys    *secrets.Keyring
	gh      *githubtest.Server
	svc     *setup.Service
	url     string
	browser *http.Client

	mu      sync.Mutex
	applied []github.AppCredentials
}

func newEnv(t *testing.T) *env {
	t.Helper()
	gin.SetMode(gin.TestMode)
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	keys, err := secrets.NewKeyring([]config.EncryptionKey{{ID: "k1", Key: []byte("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, keys: keys, gh: githubtest.New(t)}
	e.gh.SignIn("octo")
	r := gin.New()
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	pub, _ := url.Parse(srv.URL)
	dir, _ := users.NewDirectory(st, users.Params{MemoryKiB: 64, Time: 1, Threads: 1})
	e.svc, err = setup.New(setup.Config{
		Store: st, Keys: keys, Accounts: dir, Logger: slog.New(slog.DiscardHandler), PublicURL: pub,
		GitHubWebURL: e.gh.WebURL(), GitHubAPIURL: e.gh.URL, AppYML: keystone.AppManifest,
		Configured: e.configured, Prepare: e.prepare,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Mount(r)
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func (e *env) configured() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.applied) > 0
}

func (e *env) prepare(c github.AppCredentials) (func(), error) {
	if _, err := github.New(github.Config{AppID: c.AppID, PrivateKeyPEM: []byte(c.PrivateKeyPEM), APIURL: e.gh.URL}); err != nil {
		return nil, err
	}
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.applied = append(e.applied, c)
	}, nil
}

// get fetches u with the browser and returns status, Location and body.
func (e *env) do(method, u string, form url.Values) (int, string, string) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

var (
	formAction   = regexp.MustCompile(`<form method="post" action="([^"]+)" class="stack" id="create-app">`)
	manifestHTML = regexp.MustCompile(`name="manifest" value="([^"]+)"`)
	createForm   = regexp.MustCompile(`name="state" value="([^"]*)"`)
	ownerField   = regexp.MustCompile(`name="owner" value="([^"]*)"`)
	csrfField    = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
)

// openLink issues a link, opens it, and returns the setup page.
func (e *env) openLink() string {
	e.t.Helper()
	link, err := e.svc.IssueLink(e.t.Context())
	if err != nil || link == "" {
		e.t.Fatalf("IssueLink = %q, %v", link, err)
	}
	status, loc, _ := e.do("GET", link, nil)
	if status != http.StatusSeeOther || loc != "/setup" {
		e.t.Fatalf("opening the link: %d to %q, want 303 to /setup", status, loc)
	}
	status, _, page := e.do("GET", e.url+"/setup", nil)
	if status != http.StatusOK || !formAction.MatchString(page) {
		e.t.Fatalf("setup page: %d\n%s", status, page)
	}
	return page
}

// createOnGitHub posts the page's manifest to the fake GitHub, presses
// "Create", and returns GitHub's redirect back (the callback URL).
func (e *env) createOnGitHub(page string) string {
	e.t.Helper()
	action := html.UnescapeString(formAction.FindStringSubmatch(page)[1])
	manifest := html.UnescapeString(manifestHTML.FindStringSubmatch(page)[1])
	status, _, confirm := e.do("POST", action, url.Values{"manifest": {manifest}})
	if status != http.StatusOK {
		e.t.Fatalf("GitHub's new App page: %d %s", status, confirm)
	}
	st := html.UnescapeString(createForm.FindStringSubmatch(confirm)[1])
	owner := html.UnescapeString(ownerField.FindStringSubmatch(confirm)[1])
	status, loc, _ := e.do("POST", e.gh.WebURL()+"/settings/apps/new/create",
		url.Values{"manifest": {manifest}, "state": {st}, "owner": {owner}})
	if status != http.StatusFound || !strings.HasPrefix(loc, e.url+"/setup/callback?") {
		e.t.Fatalf("Create GitHub App: %d to %q", status, loc)
	}
	return loc
}

func (e *env) actions() []string {
	e.t.Helper()
	var out []string
	_, err := e.st.WalkAudit(context.Background(), func(r audit.Record) error {
		out = append(out, r.Action)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) storedApp() bool {
	_, err := e.st.AppCredentials(e.t.Context())
	return err == nil
}

// TestSetupCreatesTheAppInOneClick: link → page → GitHub → callback stores
// the App encrypted, uses it at once, and the first admin is added.
func TestSetupCreatesTheAppInOneClick(t *testing.T) {
	e := newEnv(t)
	page := e.openLink()
	for _, want := range []string{"/webhooks/github", "push", "contents: read", e.url} {
		if !strings.Contains(page, want) {
			t.Errorf("setup page lacks %q", want)
		}
	}
	callback := e.createOnGitHub(page)
	status, _, created := e.do("GET", callback, nil)
	if status != http.StatusOK || !strings.Contains(created, e.gh.AppHTMLURL()+"/installations/new") {
		t.Fatalf("callback: %d\n%s", status, created)
	}
	m, _, secret, ok := e.gh.CreatedApp()
	if !ok || m.HookAttributes.URL != e.url+"/webhooks/github" || m.RedirectURL != e.url+"/setup/callback" {
		t.Fatalf("GitHub got manifest %+v", m)
	}
	if len(e.applied) != 1 || e.applied[0].AppID != e.gh.AppID || e.applied[0].WebhookSecret != secret {
		t.Fatalf("applied = %d apps, want the fake's App with its secret", len(e.applied))
	}
	// Stored encrypted: no credential in the row, and Load gives them back.
	row, err := e.st.AppCredentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{secret, "PRIVATE KEY", e.applied[0].OAuthClientSecret, e.applied[0].OAuthClientID} {
		if strings.Contains(string(row.Sealed), plain) {
			t.Errorf("stored row holds %q in clear", plain)
		}
	}
	got, ok, err := setup.Load(t.Context(), e.st, e.keys)
	if err != nil || !ok || got != e.applied[0] {
		t.Fatalf("Load = %v %v", ok, err)
	}
	// No credential on the page.
	for _, plain := range []string{secret, "PRIVATE KEY", e.applied[0].OAuthClientSecret} {
		if strings.Contains(created, plain) {
			t.Errorf("the page shows a credential")
		}
	}
	csrf := csrfField.FindStringSubmatch(created)
	if csrf == nil {
		t.Fatalf("no admin form:\n%s", created)
	}
	status, _, done := e.do("POST", e.url+"/setup/admin", url.Values{"csrf_token": {csrf[1]}, "name": {"alice"}, "password": {"correct horse"}})
	if status != http.StatusOK || !strings.Contains(done, "Admin alice created") {
		t.Fatalf("admin form: %d\n%s", status, done)
	}
	u, err := e.st.UserByName(t.Context(), "alice")
	if err != nil || u.Role != store.RoleAdmin {
		t.Fatalf("alice = %+v, %v", u, err)
	}
	// The form is good once.
	status, _, _ = e.do("POST", e.url+"/setup/admin", url.Values{"csrf_token": {csrf[1]}, "name": {"mallory"}, "password": {"correct horse"}})
	if status != http.StatusForbidden {
		t.Errorf("second admin: %d, want 403", status)
	}
	want := []string{store.AuditSetupLinkIssued, store.AuditSetupStarted, store.AuditSetupAppCreated, store.AuditUserAdded, store.AuditSetupAdminAdded}
	if got := e.actions(); !containsInOrder(got, want) {
		t.Errorf("audit = %v, want %v in order", got, want)
	}
	// Setup refuses once an App is configured.
	status, _, body := e.do("GET", e.url+"/setup", nil)
	if status != http.StatusConflict || !strings.Contains(body, "already configured") {
		t.Errorf("setup after: %d", status)
	}
}

func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func setupForget(e *env) error { return setup.Forget(e.t.Context(), e.st, "cli:test") }

// TestSetupForAnOrganisation: the form posts to the organisation's new-App
// page; a name that is no GitHub login is refused.
func TestSetupForAnOrganisation(t *testing.T) {
	e := newEnv(t)
	e.openLink()
	status, _, page := e.do("GET", e.url+"/setup?org=acme-corp", nil)
	m := formAction.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil || !strings.HasPrefix(html.UnescapeString(m[1]), e.gh.WebURL()+"/organizations/acme-corp/settings/apps/new?state=") {
		t.Fatalf("org page %d, action %v", status, m)
	}
	cb := e.createOnGitHub(page)
	if s, _, _ := e.do("GET", cb, nil); s != http.StatusOK {
		t.Fatalf("callback %d", s)
	}
	if _, owner, _, _ := e.gh.CreatedApp(); owner != "acme-corp" {
		t.Fatalf("App owner %q", owner)
	}
	if s, _, _ := newEnvOpened(t).do("GET", "/setup?org=../../evil", nil); s != http.StatusBadRequest {
		t.Fatalf("bad org: %d", s)
	}
}

// newEnvOpened is a new env whose browser opened its link; do() then takes
// paths relative to it.
func newEnvOpened(t *testing.T) *relEnv {
	e := newEnv(t)
	e.openLink()
	return &relEnv{e}
}

type relEnv struct{ *env }

func (r *relEnv) do(method, path string, form url.Values) (int, string, string) {
	return r.env.do(method, r.url+path, form)
}
