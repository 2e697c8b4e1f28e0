package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// TestEveryRouteByRole asks every route as each kind of visitor and checks
// the status, where refusals send people, and SPEC §9's headers on every
// answer.
func TestEveryRouteByRole(t *testing.T) {
	s := newSite(t)
	clients := map[string]*client{"": s.client()}
	tokens := map[string]string{}
	for _, u := range siteUsers {
		clients[u.name] = s.signedIn(u.name)
		tokens[u.name] = clients[u.name].csrf("/")
	}
	if err := s.secrets.Set(t.Context(), "test", "acme", "shop", "web", "EXISTING", "x"); err != nil {
		t.Fatal(err)
	}
	s.settle() // the seed's running deployment would refuse every redeploy
	cases := routeCases(s)
	checkEveryRouteCovered(t, s.routes, cases)
	for _, c := range cases {
		t.Run(c.method+" "+c.path+" as "+whoName(c.who), func(t *testing.T) {
			cl := clients[c.who]
			cl.t = t
			var r response
			if c.method == "GET" {
				r = cl.get(c.path)
			} else {
				form := url.Values{}
				for k, v := range c.form {
					form[k] = v
				}
				if c.who != "" {
					form.Set("csrf_token", tokens[c.who])
				}
				r = cl.post(c.path, form)
			}
			if r.status != c.status {
				t.Fatalf("HTTP %d, want %d\n%.600s", r.status, c.status, r.body)
			}
			if c.location != "" && !strings.HasPrefix(r.header.Get("Location"), c.location) {
				t.Errorf("Location %q, want prefix %q", r.header.Get("Location"), c.location)
			}
			checkSecurityHeaders(t, r.header)
		})
	}
}

// routeCase is one request of TestEveryRouteByRole.
type routeCase struct {
	method, path, who string // who: a site user, "" for anonymous
	form              url.Values
	status            int
	location          string // prefix of Location, for redirects
}

// routeCases lists every route as each visitor, in an order where state
// changes (actions, the viewer's sign-out last) do not disturb later cases.
func routeCases(s *site) []routeCase {
	type tc = routeCase
	serving := fmt.Sprintf("/deployments/%d", s.serving.ID)
	app := s.appPath()
	var cases []tc
	// Pages every role may read; anonymous browsers are sent to sign in.
	for _, path := range []string{"/", app, serving, serving + "/log"} {
		cases = append(cases, tc{method: "GET", path: path, who: "", status: 303, location: "/login?next=" + url.QueryEscape(path)})
		for _, u := range siteUsers {
			cases = append(cases, tc{method: "GET", path: path, who: u.name, status: 200})
		}
	}
	cases = append(cases,
		tc{method: "GET", path: "/login", who: "", status: 200},
		tc{method: "GET", path: "/login", who: "vic", status: 303, location: "/"},
		tc{method: "GET", path: "/login?next=" + url.QueryEscape(app), who: "vic", status: 303, location: app},
		tc{method: "GET", path: "/login/github", who: "", status: 404},
		tc{method: "GET", path: "/login/github/callback?code=x&state=y", who: "", status: 404},
		tc{method: "GET", path: "/static/app.css", who: "", status: 200},
		tc{method: "GET", path: "/static/live.js", who: "", status: 200},
		tc{method: "GET", path: "/static/nope.js", who: "", status: 404},
		tc{method: "GET", path: "/audit", who: "", status: 303, location: "/login?next=%2Faudit"},
		tc{method: "GET", path: "/audit", who: "vic", status: 403},
		tc{method: "GET", path: "/audit", who: "dee", status: 403},
		tc{method: "GET", path: "/audit", who: "ada", status: 200},
		tc{method: "GET", path: "/users", who: "", status: 303, location: "/login?next=%2Fusers"},
		tc{method: "GET", path: "/users", who: "vic", status: 403},
		tc{method: "GET", path: "/users", who: "dee", status: 403},
		tc{method: "GET", path: "/users", who: "ada", status: 200},
		tc{method: "GET", path: "/apps/acme/shop/nope", who: "vic", status: 404},
		tc{method: "GET", path: "/deployments/999999", who: "vic", status: 404},
		tc{method: "GET", path: "/deployments/abc", who: "vic", status: 404},
		tc{method: "GET", path: "/deployments/999999/log", who: "vic", status: 404},
		// Without the sign-in form's own token a sign-in is refused.
		tc{method: "POST", path: "/login", who: "", form: url.Values{"username": {"vic"}, "password": {"vic-password-1"}}, status: 403},
	)
	// The live log: anonymous EventSources are told to sign in.
	cases = append(cases, tc{method: "GET", path: serving + "/events", who: "", status: 303, location: "/login"})
	for _, u := range siteUsers {
		cases = append(cases, tc{method: "GET", path: serving + "/events", who: u.name, status: 200})
	}
	// Actions: viewers are refused, deployers may redeploy and roll back,
	// only admins touch secrets; anonymous posts are 401.
	actions := []struct {
		path    string
		form    url.Values
		allowed map[string]bool
	}{
		{app + "/redeploy", url.Values{}, map[string]bool{"dee": true, "ada": true}},
		{app + "/rollback", url.Values{}, map[string]bool{"dee": true, "ada": true}},
		{app + "/secrets", url.Values{"key": {"NEW_KEY"}, "value": {"v"}}, map[string]bool{"ada": true}},
		{app + "/secrets/unset", url.Values{"key": {"EXISTING"}}, map[string]bool{"ada": true}},
	}
	for _, a := range actions {
		cases = append(cases, tc{method: "POST", path: a.path, who: "", form: a.form, status: 401})
		queued := false
		for _, u := range siteUsers {
			want := tc{method: "POST", path: a.path, who: u.name, form: a.form, status: 403}
			switch {
			case a.allowed[u.name] && strings.HasSuffix(a.path, "/redeploy") && queued:
				want.status = 409 // the first deployer's redeploy is still queued
			case a.allowed[u.name]:
				want.status = 303
				queued = true
			}
			cases = append(cases, want)
		}
	}
	// Signing out last: it ends each session.
	cases = append(cases, tc{method: "POST", path: "/logout", who: "", form: url.Values{}, status: 401})
	for _, u := range siteUsers {
		cases = append(cases, tc{method: "POST", path: "/logout", who: u.name, form: url.Values{}, status: 303, location: "/login?signed_out=1"})
	}
	return cases
}

// checkEveryRouteCovered fails the test unless every route the status page
// registers is asked by some case as an anonymous visitor and, when it needs a
// session (anonymous visitors are refused), as every role: a route added to
// Mount without cases here fails.
func checkEveryRouteCovered(t *testing.T, routes gin.RoutesInfo, cases []routeCase) {
	t.Helper()
	if len(routes) == 0 {
		t.Fatal("the status page registers no route")
	}
	asked := map[string]map[string]bool{} // route → visitors
	needsSession := map[string]bool{}
	for _, c := range cases {
		r, ok := matchRoute(routes, c.method, c.path)
		if !ok {
			continue // a path no route serves (a 404 case)
		}
		key := r.Method + " " + r.Path
		if asked[key] == nil {
			asked[key] = map[string]bool{}
		}
		asked[key][c.who] = true
		if c.who == "" && (c.status == http.StatusUnauthorized && c.method == "POST" && c.path != "/login" ||
			strings.HasPrefix(c.location, "/login?next=") || (c.location == "/login" && c.status == http.StatusSeeOther)) {
			needsSession[key] = true
		}
	}
	for _, r := range routes {
		key := r.Method + " " + r.Path
		if !asked[key][""] {
			t.Errorf("route %s is never asked by an anonymous visitor", key)
		}
		if !needsSession[key] {
			continue
		}
		for _, u := range siteUsers {
			if !asked[key][u.name] {
				t.Errorf("route %s (needs a session) is never asked as %s (%s)", key, u.name, u.role)
			}
		}
	}
}

// matchRoute finds the route that serves method and path (its query
// ignored): ":param" matches one segment, "*param" the rest.
func matchRoute(routes gin.RoutesInfo, method, path string) (gin.RouteInfo, bool) {
	path, _, _ = strings.Cut(path, "?")
	for _, r := range routes {
		if r.Method == method && patternMatches(r.Path, path) {
			return r, true
		}
	}
	return gin.RouteInfo{}, false
}

func patternMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	for i, p := range ps {
		if strings.HasPrefix(p, "*") {
			return i <= len(xs)
		}
		if i >= len(xs) {
			return false
		}
		if strings.HasPrefix(p, ":") {
			if xs[i] == "" {
				return false
			}
			continue
		}
		if p != xs[i] {
			return false
		}
	}
	return len(ps) == len(xs)
}

func whoName(who string) string {
	if who == "" {
		return "anonymous"
	}
	return who
}

// checkSecurityHeaders checks SPEC §9's headers.
func checkSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "script-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("Content-Security-Policy %q is not strict", csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", h.Get("X-Content-Type-Options"))
	}
}

// TestUnauthenticatedNonBrowserRequestsGet401: scripts and EventSources are
// told to sign in rather than redirected to an HTML form.
func TestUnauthenticatedNonBrowserRequestsGet401(t *testing.T) {
	s := newSite(t)
	for _, path := range []string{"/", fmt.Sprintf("/deployments/%d/events", s.live.ID), fmt.Sprintf("/deployments/%d/log", s.serving.ID)} {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
		req.Header.Set("Accept", "text/event-stream")
		r := s.client().do(req)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "sign in at /login") {
			t.Errorf("GET %s without a session: HTTP %d %q", path, r.status, r.body)
		}
	}
}

// TestSignedInPagesAreNotCached: pages with CSRF tokens and private data
// carry Cache-Control: no-store.
func TestSignedInPagesAreNotCached(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("vic")
	for _, path := range []string{"/", s.appPath(), fmt.Sprintf("/deployments/%d", s.serving.ID), "/login"} {
		if r := c.get(path); r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", path, r.header.Get("Cache-Control"))
		}
	}
}

// TestStaticFilesAreVersioned: the layout links static files by content
// hash; that URL is cached for good, any other revalidated.
func TestStaticFilesAreVersioned(t *testing.T) {
	s := newSite(t)
	page := s.client().get("/login").body
	i := strings.Index(page, "/static/app.css?v=")
	if i < 0 {
		t.Fatalf("no versioned stylesheet link in:\n%s", page)
	}
	versioned := page[i : i+strings.IndexByte(page[i:], '"')]
	r := s.client().get(versioned)
	if r.status != 200 || !strings.Contains(r.header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Fatalf("GET %s: %d %v", versioned, r.status, r.header)
	}
	if r := s.client().get("/static/app.css?v=old"); r.header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("stale version: Cache-Control %q", r.header.Get("Cache-Control"))
	}
}
