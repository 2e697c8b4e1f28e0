package e2e_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"testing"
	"time"
)

// webClient is a browser-less visitor of the status page: a cookie jar,
// no redirects followed (so that each answer can be checked).
type webClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func (s *stack) visitor(t *testing.T) *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{t: t, base: s.ks.URL, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get fetches path and returns the status and body.
func (c *webClient) get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.hc.Get(c.base + path)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// page fetches path and fails the test unless it answers 200.
func (c *webClient) page(path string) string {
	c.t.Helper()
	code, body := c.get(path)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s: HTTP %d\n%s", path, code, body)
	}
	return body
}

// csrf reads the form token from the page at path.
func (c *webClient) csrf(path string) string {
	c.t.Helper()
	_, body := c.get(path)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("no CSRF token on %s", path)
	}
	return m[1]
}

// post sends a form with the CSRF token of the page at tokenFrom and
// returns the status and the Location header.
func (c *webClient) post(path, tokenFrom string, form url.Values) (int, string) {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf_token", c.csrf(tokenFrom))
	resp, err := c.hc.PostForm(c.base+path, form)
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// login posts the sign-in form and returns the status: 303 when signed in.
func (c *webClient) login(name, pw string) int {
	c.t.Helper()
	code, _ := c.post("/login", "/login", url.Values{"name": {name}, "password": {pw}})
	return code
}

// signIn signs name in with its password, failing the test otherwise.
func (s *stack) signIn(t *testing.T, name string) *webClient {
	t.Helper()
	c := s.visitor(t)
	if code := c.login(name, password(name)); code != http.StatusSeeOther {
		t.Fatalf("sign-in of %s answered %d, want 303", name, code)
	}
	return c
}
