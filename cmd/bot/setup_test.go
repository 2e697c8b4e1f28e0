package main

import (
	"bytes"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/webhook"
)

// browser is a cookie-keeping client that shows each redirect.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, u string, form url.Values) (int, string, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(out)
}

var (
	setupAction   = regexp.MustCompile(`action="([^"]+)" class="stack" id="create-app"`)
	setupManifest = regexp.MustCompile(`name="manifest" value="([^"]+)"`)
	githubState   = regexp.MustCompile(`name="state" value="([^"]*)"`)
)

// signedPush posts GitHub's push fixture, its repository moved to webURL
// (Keystone refuses a clone_url outside KEYSTONE_GITHUB_WEB_URL).
func signedPush(t *testing.T, base, webURL, guid string, secret []byte) int {
	t.Helper()
	body := bytes.ReplaceAll(pushFixture(t), []byte("https://github.com/"), []byte(webURL+"/"))
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSetupTakesEffectWithoutRestart: the real binary with no App logs a
// setup link; the App created through it (fake GitHub) is in use at once —
// webhooks signed with its new secret are accepted, sign-in with GitHub is
// offered — and the link is good once.
func TestSetupTakesEffectWithoutRestart(t *testing.T) {
	gh := githubtest.New(t)
	gh.SignIn("octo")
	fr := keystonetest.NewFront(t)
	base := fr.URL
	dbURL := storetest.Fresh(t)
	vars := map[string]string{
		"DATABASE_URL": dbURL, "KEYSTONE_DATA_DIR": t.TempDir(),
		"KEYSTONE_PUBLIC_URL": base, "KEYSTONE_GITHUB_API_URL": gh.URL, "KEYSTONE_GITHUB_WEB_URL": gh.WebURL(),
	}
	ks := keystonetest.Start(t, vars)
	fr.To(t, ks.URL)
	line := ks.WaitLog(10*time.Second, func(l map[string]any) bool { _, ok := l["setup_url"]; return ok })
	link, _ := line["setup_url"].(string)
	if !strings.HasPrefix(link, base+"/setup?token=") {
		t.Fatalf("setup link %q", link)
	}
	if code := signedPush(t, base, gh.WebURL(), "before-setup", []byte("anything")); code != http.StatusUnauthorized {
		t.Fatalf("webhook before setup: %d, want 401", code)
	}
	b := newBrowser(t)
	if s, loc, _ := b.do("GET", link, nil); s != http.StatusSeeOther || loc != "/setup" {
		t.Fatalf("link: %d %q", s, loc)
	}
	s, _, page := b.do("GET", base+"/setup", nil)
	m := setupAction.FindStringSubmatch(page)
	if s != http.StatusOK || m == nil {
		t.Fatalf("setup page %d:\n%s", s, page)
	}
	manifest := html.UnescapeString(setupManifest.FindStringSubmatch(page)[1])
	s, _, confirm := b.do("POST", html.UnescapeString(m[1]), url.Values{"manifest": {manifest}})
	if s != http.StatusOK {
		t.Fatalf("GitHub's page: %d %s", s, confirm)
	}
	state := html.UnescapeString(githubState.FindStringSubmatch(confirm)[1])
	s, callback, _ := b.do("POST", gh.WebURL()+"/settings/apps/new/create", url.Values{"manifest": {manifest}, "state": {state}, "owner": {"octo"}})
	if s != http.StatusFound {
		t.Fatalf("create: %d", s)
	}
	if s, _, done := b.do("GET", callback, nil); s != http.StatusOK || !strings.Contains(done, "/installations/new") {
		t.Fatalf("callback: %d\n%s", s, done)
	}
	_, _, secret, ok := gh.CreatedApp()
	if !ok {
		t.Fatal("no App created on the fake")
	}
	if code := signedPush(t, base, gh.WebURL(), "after-setup", []byte(secret)); code != http.StatusAccepted {
		t.Fatalf("webhook signed with the new secret: %d, want 202 without a restart", code)
	}
	if code := signedPush(t, base, gh.WebURL(), "wrong-secret", []byte("not-"+secret)); code != http.StatusUnauthorized {
		t.Fatalf("webhook with a wrong secret: %d, want 401", code)
	}
	if s, _, login := b.do("GET", base+"/login", nil); s != http.StatusOK || !strings.Contains(login, "Sign in with GitHub") {
		t.Fatalf("login page %d does not offer GitHub sign-in", s)
	}
	if s, _, _ := b.do("GET", link, nil); s != http.StatusConflict {
		t.Fatalf("the link again: %d, want 409 (an App is configured)", s)
	}
	if strings.Contains(ks.Output(), secret) || strings.Contains(ks.Output(), "PRIVATE KEY") {
		t.Fatal("a credential reached the log")
	}
	t.Logf("setup done, App %s", strconv.FormatInt(gh.AppID, 10))

	// A restart uses the stored App: no link, webhooks accepted.
	ks.Kill()
	ks = keystonetest.Start(t, vars)
	fr.To(t, ks.URL)
	if code := signedPush(t, base, gh.WebURL(), "after-restart", []byte(secret)); code != http.StatusAccepted {
		t.Fatalf("webhook after restart: %d", code)
	}
	if strings.Contains(ks.Output(), "setup_url") {
		t.Fatal("a setup link was logged with an App stored")
	}
	ks.Kill()

	// keystone app forget clears it, audited; the next start offers setup again.
	c := cli{t: t, env: map[string]string{"DATABASE_URL": dbURL, "USER": "ops"}}
	if r := c.run("", "app", "forget"); r.exit != 0 || !strings.Contains(r.stdout, "forgot") {
		t.Fatalf("app forget: %v", r)
	}
	if r := c.run("", "app", "forget"); r.exit != 1 || !strings.Contains(r.stderr, "no GitHub App is stored") {
		t.Fatalf("app forget again: %v", r)
	}
	var actor string
	if err := pgxQueryRow(t, dbURL, `SELECT actor FROM audit_events WHERE action = 'github_app.forgotten'`, &actor); err != nil || !strings.HasPrefix(actor, "cli:") {
		t.Fatalf("forget audit: %q %v", actor, err)
	}
	ks = keystonetest.Start(t, vars)
	ks.WaitLog(10*time.Second, func(l map[string]any) bool { _, ok := l["setup_url"]; return ok })
}
