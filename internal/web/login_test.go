package web_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/web"
)

func sessionCookie(t *testing.T, h http.Header) *http.Cookie {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(line)
		if err == nil && (ck.Name == "keystone_session" || ck.Name == "__Host-keystone_session") {
			return ck
		}
	}
	t.Fatalf("no keystone_session cookie set: %v", h.Values("Set-Cookie"))
	return nil
}

func TestSignInSetsAStrictSessionCookieAndAudits(t *testing.T) {
	cases := []struct {
		name       string
		publicURL  string
		wantSecure bool
		wantName   string
	}{
		{"http", "http://keystone.example", false, "keystone_session"},
		// __Host-: the browser refuses it unless Secure, Path=/ and no Domain,
		// so no other host (an app on a sibling subdomain) can set or shadow it.
		{"https", "https://keystone.example", true, "__Host-keystone_session"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, func(o *web.Options) { o.PublicURL, _ = url.Parse(tc.publicURL) })
			c := s.client()
			r := c.post("/login", url.Values{"csrf_token": {c.csrf("/login")}, "name": {"Dee "}, "password": {password("dee")}, "next": {"/"}})
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
				t.Fatalf("sign in: HTTP %d Location %q\n%s", r.status, r.header.Get("Location"), r.body)
			}
			ck := sessionCookie(t, r.header)
			if ck.Name != tc.wantName || ck.Domain != "" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge != 12*3600 || ck.Secure != tc.wantSecure {
				t.Errorf("session cookie %+v: want %s, no Domain, HttpOnly, SameSite=Lax, Path=/, Max-Age=43200, Secure=%v", ck, tc.wantName, tc.wantSecure)
			}
			if tc.wantSecure { // the token under the unprefixed name, as a sibling host could set it, is not a session
				req, _ := http.NewRequest(http.MethodGet, c.base+"/", nil)
				req.Header.Set("Accept", "text/html")
				req.AddCookie(&http.Cookie{Name: "keystone_session", Value: ck.Value})
				bare := s.client()
				if r := bare.do(req); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login") {
					t.Errorf("unprefixed session cookie under https: HTTP %d Location %q, want the sign-in page", r.status, r.header.Get("Location"))
				}
			}
			if len(ck.Value) < 40 {
				t.Errorf("session token %q is too short to be unguessable", ck.Value)
			}
			if !s.hasAudit(store.AuditLoginSucceeded, "dee", "user:dee") {
				t.Errorf("no login.succeeded audit event for dee: %+v", s.audit())
			}
			if r := c.get("/"); r.status != http.StatusOK || !strings.Contains(r.body, "dee") {
				t.Fatalf("signed in GET /: HTTP %d", r.status)
			}
		})
	}
}

func TestWrongPasswordIsRefusedAndAudited(t *testing.T) {
	s := newSite(t)
	cases := []struct{ name, user, password string }{
		{"wrong password", "vic", "not-vics-password"},
		{"unknown user", "nobody", "whatever"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.client()
			r := c.post("/login", url.Values{"csrf_token": {c.csrf("/login")}, "name": {tc.user}, "password": {tc.password}})
			if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong user name or password.") {
				t.Fatalf("HTTP %d\n%s", r.status, r.body)
			}
			if strings.Contains(r.body, tc.password) {
				t.Errorf("the page echoes the password")
			}
			if r.header.Get("Set-Cookie") != "" && strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "keystone_session=") {
				t.Errorf("a refused sign-in set a session cookie: %v", r.header.Values("Set-Cookie"))
			}
			if !s.hasAudit(store.AuditLoginFailed, tc.user, "user:"+tc.user) {
				t.Errorf("no login.failed audit event for %s", tc.user)
			}
			if r := c.get("/"); r.status != http.StatusSeeOther {
				t.Errorf("after a refused sign-in GET / = %d, want 303 to /login", r.status)
			}
		})
	}
}

func TestSignInFormNeedsItsCSRFToken(t *testing.T) {
	s := newSite(t)
	cases := []struct {
		name  string
		token func(c *client) string
	}{
		{"no token", func(c *client) string { c.csrf("/login"); return "" }},
		{"wrong token", func(c *client) string { c.csrf("/login"); return "forged-token-forged-token-forged-token-abcd" }},
		{"no cookie", func(c *client) string { return s.client().csrf("/login") }}, // a token from another browser
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.client()
			r := c.post("/login", url.Values{"csrf_token": {tc.token(c)}, "name": {"ada"}, "password": {password("ada")}})
			if r.status != http.StatusForbidden || !strings.Contains(r.body, "sign-in form expired") {
				t.Fatalf("HTTP %d\n%s", r.status, r.body)
			}
			if strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "keystone_session=") {
				t.Fatal("signed in without a valid form token")
			}
		})
	}
}

// TestSignInIsThrottled: five failures within a minute for a name, or from
// an address, make the next attempts 429 — even with the right password.
func TestSignInIsThrottled(t *testing.T) {
	s := newSite(t)
	fail := func(c *client, name string) {
		t.Helper()
		r := c.post("/login", url.Values{"csrf_token": {c.csrf("/login")}, "name": {name}, "password": {"wrong"}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("failing sign-in as %s: HTTP %d", name, r.status)
		}
	}
	try := func(c *client, name string) response {
		t.Helper()
		return c.post("/login", url.Values{"csrf_token": {c.csrf("/login")}, "name": {name}, "password": {password(name)}})
	}

	// Per name: failures from one address lock the name everywhere.
	a := s.from("198.51.100.1:1000")
	for range web.LoginFailureLimit {
		fail(a, "vic")
	}
	r := try(s.from("198.51.100.2:1000"), "vic")
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Too many failed sign-ins") {
		t.Fatalf("vic after %d failures: HTTP %d\n%s", web.LoginFailureLimit, r.status, r.body)
	}
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > int(web.LoginFailureWindow.Seconds()) {
		t.Errorf("Retry-After %q, want 1..60 seconds", r.header.Get("Retry-After"))
	}
	if r := try(s.from("198.51.100.2:1000"), "ada"); r.status != http.StatusSeeOther {
		t.Errorf("ada from a clean address while vic is throttled: HTTP %d", r.status)
	}

	// Per address: failures for many names lock the address for all names.
	c := s.from("203.0.113.7:1000")
	for i := range web.LoginFailureLimit {
		fail(c, "guess"+strconv.Itoa(i))
	}
	if r := try(c, "ada"); r.status != http.StatusTooManyRequests {
		t.Errorf("ada from a throttled address: HTTP %d, want 429", r.status)
	}
	if r := try(s.from("203.0.113.8:1000"), "ada"); r.status != http.StatusSeeOther {
		t.Errorf("ada from another address: HTTP %d, want 303", r.status)
	}

	// A good sign-in forgets the name's failures.
	d := s.from("192.0.2.10:1000")
	for range web.LoginFailureLimit - 1 {
		fail(s.from("192.0.2.11:1000"), "dee")
	}
	if r := try(d, "dee"); r.status != http.StatusSeeOther {
		t.Fatalf("dee after %d failures: HTTP %d", web.LoginFailureLimit-1, r.status)
	}
	for range web.LoginFailureLimit - 1 {
		fail(s.from("192.0.2.12:1000"), "dee")
	}
	if r := try(s.from("192.0.2.13:1000"), "dee"); r.status != http.StatusSeeOther {
		t.Fatalf("dee's failures were not forgotten after a good sign-in: HTTP %d", r.status)
	}
}

func TestSessionExpires(t *testing.T) {
	// Sign in with a clock 13 hours behind: the session is stored already
	// past its 12 hours, and the server refuses it.
	s := newSite(t, func(o *web.Options) { o.Now = func() time.Time { return time.Now().Add(-13 * time.Hour) } })
	c := s.signedIn("vic")
	if r := c.get("/"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login") {
		t.Fatalf("expired session: GET / = %d %q, want 303 to /login", r.status, r.header.Get("Location"))
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("dee")
	u, _ := url.Parse(s.srv.URL)
	old := c.hc.Jar.Cookies(u)
	r := c.post("/logout", url.Values{"csrf_token": {c.csrf("/")}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?signed_out=1" {
		t.Fatalf("sign out: HTTP %d %q", r.status, r.header.Get("Location"))
	}
	if ck := sessionCookie(t, r.header); ck.MaxAge >= 0 || ck.Value != "" {
		t.Errorf("sign out did not clear the cookie: %+v", ck)
	}
	if !s.hasAudit(store.AuditLogout, "dee", "user:dee") {
		t.Error("no logout audit event")
	}
	if r := c.get("/login?signed_out=1"); !strings.Contains(r.body, "You are signed out.") {
		t.Error("the sign-in page does not say the user is signed out")
	}
	// The old cookie, replayed, opens nothing: the session is gone server-side.
	replay := s.client()
	replay.hc.Jar.SetCookies(u, old)
	if r := replay.get("/"); r.status != http.StatusSeeOther {
		t.Fatalf("replayed session cookie after sign out: GET / = %d", r.status)
	}
}

func TestSignOutNeedsCSRF(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("dee")
	if r := c.post("/logout", url.Values{}); r.status != http.StatusForbidden {
		t.Fatalf("sign out without a token: HTTP %d", r.status)
	}
	if r := c.get("/"); r.status != http.StatusOK {
		t.Fatalf("the session ended on a forged sign out: GET / = %d", r.status)
	}
}

func TestRemovingAUserEndsTheirSessions(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("vic")
	if _, err := s.store.DeleteUser(t.Context(), "vic"); err != nil {
		t.Fatal(err)
	}
	if r := c.get("/"); r.status != http.StatusSeeOther {
		t.Fatalf("removed user's session: GET / = %d", r.status)
	}
}

func TestSignInRedirectsOnlyWithinKeystone(t *testing.T) {
	s := newSite(t)
	cases := []struct{ next, want string }{
		{"/apps/acme/shop/web", "/apps/acme/shop/web"},
		{"/deployments/1?x=1", "/deployments/1?x=1"},
		{"//evil.example/x", "/"},
		{"https://evil.example/", "/"},
		{"/\\evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"", "/"},
	}
	for _, tc := range cases {
		t.Run(tc.next, func(t *testing.T) {
			c := s.client()
			r := c.post("/login", url.Values{"csrf_token": {c.csrf("/login")}, "name": {"vic"}, "password": {password("vic")}, "next": {tc.next}})
			if r.status != http.StatusSeeOther || r.header.Get("Location") != tc.want {
				t.Fatalf("next=%q: HTTP %d Location %q, want %q", tc.next, r.status, r.header.Get("Location"), tc.want)
			}
		})
	}
}
