package setup_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/store"
)

// TestSetupRefusesBadInput: each bad answer gets a clear page naming the
// problem, stores nothing, and is audited as a refusal.
func TestSetupRefusesBadInput(t *testing.T) {
	cases := []struct {
		name string
		// run drives the flow to the bad request and returns its answer.
		run        func(e *env) (int, string)
		wantStatus int
		wantText   string
	}{
		{"wrong state", func(e *env) (int, string) {
			cb := e.createOnGitHub(e.openLink())
			u, _ := url.Parse(cb)
			q := u.Query()
			q.Set("state", "forged")
			u.RawQuery = q.Encode()
			s, _, b := e.do("GET", u.String(), nil)
			return s, b
		}, http.StatusForbidden, "does not match the setup started in this browser"},
		{"state from another browser", func(e *env) (int, string) {
			cb := e.createOnGitHub(e.openLink())
			e.browser.Jar = nil // the attacker's browser holds no setup cookie
			s, _, b := e.do("GET", cb, nil)
			return s, b
		}, http.StatusForbidden, "does not match"},
		{"expired code", func(e *env) (int, string) {
			cb := e.createOnGitHub(e.openLink())
			e.gh.ExpireManifestCodes()
			s, _, b := e.do("GET", cb, nil)
			return s, b
		}, http.StatusBadGateway, "GitHub answered 404"},
		{"reused code", func(e *env) (int, string) {
			page := e.openLink()
			cb := e.createOnGitHub(page)
			code, _ := url.Parse(cb)
			// The code is converted by someone else first (GitHub: good once).
			req, _ := http.NewRequest("POST", e.gh.URL+"app-manifests/"+code.Query().Get("code")+"/conversions", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s, _, b := e.do("GET", cb, nil)
			return s, b
		}, http.StatusBadGateway, "converts once"},
		{"GitHub answers 422", func(e *env) (int, string) {
			cb := e.createOnGitHub(e.openLink())
			e.gh.RefuseNextConversion(http.StatusUnprocessableEntity, "Name is already in use")
			s, _, b := e.do("GET", cb, nil)
			return s, b
		}, http.StatusBadGateway, "GitHub answered 422"},
		{"no code", func(e *env) (int, string) {
			cb := e.createOnGitHub(e.openLink())
			u, _ := url.Parse(cb)
			q := u.Query()
			q.Del("code")
			u.RawQuery = q.Encode()
			s, _, b := e.do("GET", u.String(), nil)
			return s, b
		}, http.StatusBadRequest, "no code to convert"},
		{"reused link", func(e *env) (int, string) {
			link, err := e.svc.IssueLink(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			e.do("GET", link, nil)
			s, _, b := e.do("GET", link, nil)
			return s, b
		}, http.StatusForbidden, "already used"},
		{"unknown link", func(e *env) (int, string) {
			s, _, b := e.do("GET", e.url+"/setup?token=guessed", nil)
			return s, b
		}, http.StatusForbidden, "not one Keystone issued"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			status, body := c.run(e)
			if status != c.wantStatus || !strings.Contains(body, c.wantText) {
				t.Fatalf("answer %d, want %d with %q:\n%s", status, c.wantStatus, c.wantText, body)
			}
			if e.storedApp() || e.configured() {
				t.Fatal("credentials stored or applied after a refusal")
			}
			if !contains(e.actions(), store.AuditSetupRefused) {
				t.Errorf("audit %v lacks %s", e.actions(), store.AuditSetupRefused)
			}
		})
	}
}

// TestSetupReplayedCallbackAndSecondAttempt: GitHub's answer replayed after
// success, and a whole second setup, are refused; the first App stays.
func TestSetupReplayedCallbackAndSecondAttempt(t *testing.T) {
	e := newEnv(t)
	cb := e.createOnGitHub(e.openLink())
	if s, _, b := e.do("GET", cb, nil); s != http.StatusOK {
		t.Fatalf("first callback: %d %s", s, b)
	}
	s, _, b := e.do("GET", cb, nil)
	if s != http.StatusConflict || !strings.Contains(b, "already configured") {
		t.Fatalf("replayed callback: %d %s", s, b)
	}
	if link, err := e.svc.IssueLink(t.Context()); err != nil || link != "" {
		t.Fatalf("IssueLink with an App = %q, %v; want none", link, err)
	}
	if len(e.applied) != 1 {
		t.Fatalf("applied %d times", len(e.applied))
	}
}

// TestSetupStateReplayedAfterForget: with the App forgotten, GitHub's old
// answer does not store again: its state is spent.
func TestSetupStateReplayedAfterForget(t *testing.T) {
	e := newEnv(t)
	cb := e.createOnGitHub(e.openLink())
	if s, _, _ := e.do("GET", cb, nil); s != http.StatusOK {
		t.Fatalf("first callback: %d", s)
	}
	if err := setupForget(e); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.applied = nil // as after a restart without the App
	e.mu.Unlock()
	// The browser still holds the state (success cleared the cookie: put it
	// back, as an attacker replaying the whole exchange would).
	u, _ := url.Parse(cb)
	base, _ := url.Parse(e.url + "/setup")
	e.browser.Jar.SetCookies(base, []*http.Cookie{{Name: "keystone_setup", Value: u.Query().Get("state"), Path: "/setup"}})
	s, _, b := e.do("GET", cb, nil)
	if s != http.StatusForbidden || !strings.Contains(b, "already used") {
		t.Fatalf("replayed state: %d %s", s, b)
	}
	if e.storedApp() {
		t.Fatal("stored again")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
