package web_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
	"github.com/keystone-app/keystone/internal/web"
)

// githubSite is a site whose "Sign in with GitHub" goes to a fake GitHub,
// with ada mapped to the GitHub login Ada-GH.
func githubSite(t *testing.T, clientSecret string) (*site, *githubtest.Server) {
	t.Helper()
	gh := githubtest.New(t)
	s := newSite(t, func(o *web.Options) {
		o.GitHubWebURL, o.GitHubAPIURL = gh.WebURL(), gh.URL
		o.OAuthClientID, o.OAuthClientSecret = "client-1", clientSecret
	})
	gh.AddOAuthApp("client-1", "secret-1", s.srv.URL+"/login/github/callback")
	if _, err := s.dir.Add(t.Context(), "test", users.NewUser{Name: "gina", Role: store.RoleDeployer, GitHubLogin: "Gina-GH"}); err != nil {
		t.Fatal(err)
	}
	return s, gh
}

// follow walks a browser through the redirects starting at target (a URL)
// and returns the last answer; cookies stay in the client's jar.
func (c *client) follow(target string) response {
	c.t.Helper()
	for range 10 {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Accept", "text/html")
		r := c.do(req)
		loc := r.header.Get("Location")
		if r.status < 300 || r.status > 399 || loc == "" {
			return r
		}
		u, err := url.Parse(target)
		if err != nil {
			c.t.Fatal(err)
		}
		next, err := u.Parse(loc)
		if err != nil {
			c.t.Fatal(err)
		}
		target = next.String()
	}
	c.t.Fatal("too many redirects")
	return response{}
}

func TestSignInWithGitHub(t *testing.T) {
	s, gh := githubSite(t, "secret-1")
	gh.SignIn("gina-gh") // GitHub logins are matched without regard to case
	c := s.client()
	login := c.get("/login?next=" + url.QueryEscape(s.appPath()))
	if !strings.Contains(login.body, `href="/login/github?next=%2Fapps%2Facme%2Fshop%2Fweb"`) {
		t.Fatalf("the sign-in page offers no GitHub sign-in:\n%s", login.body)
	}
	start := c.get("/login/github?next=" + url.QueryEscape(s.appPath()))
	loc, _ := url.Parse(start.header.Get("Location"))
	q := loc.Query()
	if start.status != http.StatusSeeOther || !strings.HasPrefix(loc.String(), gh.WebURL()+"/login/oauth/authorize?") ||
		q.Get("client_id") != "client-1" || q.Get("redirect_uri") != s.srv.URL+"/login/github/callback" || len(q.Get("state")) < 40 {
		t.Fatalf("start: HTTP %d to %s", start.status, loc)
	}
	r := c.follow(loc.String())
	if r.status != http.StatusOK || !strings.Contains(r.body, "<h1>web</h1>") || !strings.Contains(r.body, "gina") {
		t.Fatalf("after GitHub: HTTP %d\n%s", r.status, r.body)
	}
	if !s.hasAudit(store.AuditLoginSucceeded, "gina", "user:gina") {
		t.Error("GitHub sign-in not audited")
	}
	if strings.Contains(s.logs.String(), "gho_") || strings.Contains(s.logs.String(), "secret-1") {
		t.Errorf("a GitHub token or the client secret reached the log:\n%s", s.logs.String())
	}
}

func TestSignInWithGitHubRefusals(t *testing.T) {
	cases := []struct {
		name    string
		secret  string
		login   string
		deny    bool
		tamper  func(callback *url.URL, c *client) // changes the way back from GitHub
		status  int
		message string
		audit   string // actor of a login.failed event, if one is expected
	}{
		{name: "login not mapped to a user", secret: "secret-1", login: "stranger",
			status: http.StatusForbidden, message: "GitHub user stranger is not a Keystone user", audit: "github:stranger"},
		{name: "user cancels on GitHub", secret: "secret-1", login: "Gina-GH", deny: true,
			status: http.StatusUnauthorized, message: "GitHub sign-in was not completed: The user has denied your application access."},
		{name: "wrong client secret", secret: "not-the-secret", login: "Gina-GH",
			status: http.StatusBadGateway, message: "GitHub sign-in failed: The client_id and/or client_secret passed are incorrect."},
		{name: "state changed", secret: "secret-1", login: "Gina-GH",
			tamper: func(u *url.URL, _ *client) {
				q := u.Query()
				q.Set("state", "forged-state-value-forged-state-value-abcdefg")
				u.RawQuery = q.Encode()
			},
			status: http.StatusBadRequest, message: "could not be verified"},
		{name: "another browser's callback", secret: "secret-1", login: "Gina-GH",
			tamper: func(_ *url.URL, c *client) { c.hc.Jar, _ = newJar() },
			status: http.StatusBadRequest, message: "could not be verified"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, gh := githubSite(t, tc.secret)
			gh.SignIn(tc.login)
			gh.DenyAuthorization(tc.deny)
			c := s.client()
			start := c.get("/login/github")
			authorize, _ := url.Parse(start.header.Get("Location"))
			back := c.do(mustRequest(t, authorize.String()))
			callback, _ := url.Parse(back.header.Get("Location"))
			if tc.tamper != nil {
				tc.tamper(callback, c)
			}
			r := c.get(strings.TrimPrefix(callback.String(), s.srv.URL))
			if r.status != tc.status || !strings.Contains(r.body, tc.message) {
				t.Fatalf("HTTP %d, want %d with %q\n%s", r.status, tc.status, tc.message, r.body)
			}
			if strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "keystone_session=") {
				t.Fatal("a refused GitHub sign-in set a session")
			}
			if tc.audit != "" && !s.hasAudit(store.AuditLoginFailed, tc.audit, "") {
				t.Errorf("no login.failed event by %s", tc.audit)
			}
			if strings.Contains(s.logs.String(), "gho_") {
				t.Error("a GitHub token reached the log")
			}
		})
	}
}

func newJar() (http.CookieJar, error) { return cookiejar.New(nil) }

func mustRequest(t *testing.T, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestRenamedGitHubLoginGivesNothing performs the attack of issue 12 item 3:
// gina's GitHub account is renamed, and someone registers her old login.
// Keystone matches GitHub's numeric user id, not the login: the newcomer is
// refused, and gina still signs in under her new login.
func TestRenamedGitHubLoginGivesNothing(t *testing.T) {
	s, gh := githubSite(t, "secret-1")
	signIn := func(login string) response {
		t.Helper()
		gh.SignIn(login)
		c := s.client()
		start := c.get("/login/github")
		return c.follow(start.header.Get("Location"))
	}
	if r := signIn("Gina-GH"); r.status != http.StatusOK || !strings.Contains(r.body, "gina") {
		t.Fatalf("gina's first GitHub sign-in: HTTP %d", r.status)
	}
	gh.RenameUser("Gina-GH", "Gina-Renamed")
	gh.AddUser("Gina-GH") // a new account takes the freed login
	if r := signIn("Gina-GH"); r.status != http.StatusForbidden {
		t.Fatalf("the new owner of gina's old login: HTTP %d, want 403\n%s", r.status, r.body)
	}
	if r := signIn("Gina-Renamed"); r.status != http.StatusOK || !strings.Contains(r.body, "gina") {
		t.Fatalf("gina under her new login: HTTP %d", r.status)
	}
}
