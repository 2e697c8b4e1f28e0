package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/web/webtest"
	"github.com/keystone-app/keystone/internal/webhook"
)

// firstRunAudit is what TestFirstRunInOneClick's steps leave in the audit
// trail; TestEveryAuditedActionLeavesItsEvent counts these actions covered.
func firstRunAudit() []auditWant {
	return []auditWant{
		{"keystone", "setup.link_issued", "setup", map[string]any{}, "start without an App"},
		{"setup", "setup.started", "setup", map[string]any{}, "open the link"},
		{"setup", "setup.app_created", "github_app", map[string]any{"slug": githubtest.DefaultSlug}, "GitHub's callback"},
		{"setup", "user.added", "user:alice", map[string]any{"role": "admin"}, "first admin form"},
		{"setup", "setup.admin_added", "setup", map[string]any{"user": "alice"}, "first admin form"},
		{"setup", "setup.refused", "setup", map[string]any{"step": "callback"}, "callback replayed"},
		{cliActor, "github_app.forgotten", "github_app", map[string]any{"stored_by": "setup"}, "app forget"},
	}
}

// newGitHubFront stands in for github.com, which serves both the web pages
// and git: paths of a repository's git (OWNER/REPO.git/…) go to the git
// server, everything else to the fake GitHub's web pages. Keystone requires
// a push's clone_url to be under KEYSTONE_GITHUB_WEB_URL.
func newGitHubFront(t *testing.T, web, git string) *httptest.Server {
	webURL, _ := url.Parse(web)
	gitURL, _ := url.Parse(git)
	srv := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		if strings.Contains(r.In.URL.Path, ".git/") {
			r.SetURL(gitURL)
		} else {
			r.SetURL(webURL)
		}
	}})
	t.Cleanup(srv.Close)
	return srv
}

// TestFirstRunInOneClick is the README's quick start with the fake GitHub
// standing in for github.com: `keystone serve` with no App logs a setup
// link; Chromium opens it, creates the App on "GitHub" and comes back,
// creates the first admin, installs the App; then a push signed with the
// secret GitHub generated deploys the test app — with no restart anywhere.
// Each page is saved under .artifacts/screenshots (e2e-firstrun-*).
func TestFirstRunInOneClick(t *testing.T) {
	start := time.Now()
	e := deploytest.New(t, "web")
	e.GitHub.SignIn("octo")
	e.GitHub.SetInstallTarget(deploytest.Installation, "octo", repoName)
	// The public URL is a proxy in front of Keystone, as a tunnel would be:
	// known before Keystone starts, with no port to guess.
	front := keystonetest.NewFront(t)
	base := front.URL
	github := newGitHubFront(t, e.GitHub.WebURL(), e.Git.URL)
	ks := keystonetest.Start(t, map[string]string{
		"DATABASE_URL": e.DBURL, "KEYSTONE_DATA_DIR": t.TempDir(), "KEYSTONE_PUBLIC_URL": base,
		"KEYSTONE_GITHUB_API_URL": e.GitHub.URL, "KEYSTONE_GITHUB_WEB_URL": github.URL,
		"KEYSTONE_PORT_RANGE": e.PortRange.String(), "KEYSTONE_APP_HOST": "127.0.0.1",
	})
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(strings.TrimRight(ks.Output(), "\n"), "\n")
			t.Logf("Keystone's last log lines:\n%s", strings.Join(lines[max(len(lines)-40, 0):], "\n"))
		}
	})
	front.To(t, ks.URL)
	line := ks.WaitLog(30*time.Second, func(l map[string]any) bool { _, ok := l["setup_url"]; return ok })
	link, _ := line["setup_url"].(string)

	ctx := webtest.Browser(t, 1280, 900)
	wait := func(js string) { t.Helper(); webtest.WaitFor(t, ctx, js, 30*time.Second) }
	shot := func(name string) { t.Helper(); webtest.Screenshot(t, ctx, "e2e-firstrun-"+name) }
	do := func(actions ...chromedp.Action[chromedp.Void]) { t.Helper(); webtest.Do(t, ctx, actions...) }

	// 1. Open the link: the page says what will be created.
	do(chromedp.Navigate(link))
	wait(`location.pathname === "/setup" && document.getElementById("create") !== null`)
	if got := webtest.Eval(t, ctx, `document.getElementById("manifest-hook").textContent`); got != base+"/webhooks/github" {
		t.Fatalf("webhook URL shown %q", got)
	}
	shot("1-setup")
	// 2. Click: GitHub's confirmation, then back to Keystone.
	do(chromedp.Click(chromedp.CSS("#create")))
	wait(`document.title.includes("fake GitHub") && document.getElementById("create") !== null`)
	shot("2-github-create")
	do(chromedp.Click(chromedp.CSS("#create")))
	wait(`location.pathname === "/setup/callback" && document.getElementById("install") !== null`)
	callback := webtest.Eval(t, ctx, `location.href`)
	shot("3-app-ready")
	// 3. The first admin, then install.
	do(
		chromedp.SendKeys(chromedp.CSS("#name"), "alice"),
		chromedp.SendKeys(chromedp.CSS("#password"), password("alice")),
		chromedp.Click(chromedp.CSS("#admin-form button[type=submit]")),
	)
	wait(`document.getElementById("signin") !== null`)
	shot("4-admin-created")
	do(chromedp.Click(chromedp.CSS("a[href$='/installations/new']")))
	wait(`document.getElementById("install") !== null`)
	shot("5-github-install")
	do(chromedp.Click(chromedp.CSS("#install")))
	wait(`location.pathname === "/login"`)
	if e.GitHub.Installs() != 1 {
		t.Fatalf("installs = %d", e.GitHub.Installs())
	}
	do(
		chromedp.SendKeys(chromedp.CSS("#name"), "alice"),
		chromedp.SendKeys(chromedp.CSS("#password"), password("alice")),
		chromedp.Click(chromedp.CSS("form[action='/login'] button[type=submit]")),
	)
	wait(`location.pathname === "/" && document.querySelector("h1").textContent === "Apps"`)

	// 4. Push: signed with the secret GitHub made for the App, it deploys.
	_, _, secret, ok := e.GitHub.CreatedApp()
	if !ok {
		t.Fatal("no App created")
	}
	sha := e.Repo.Commit(t, "main", deploytest.Files(t, gittest.KeystoneYML("web", "main"), gittest.Behaviour{Version: "v1"}), "first deploy")
	body := bytes.ReplaceAll(e.Repo.PushEvent("main", sha, "octo"), []byte(e.Git.URL), []byte(github.URL))
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "firstrun-push")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign([]byte(secret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("push answered %d", resp.StatusCode)
	}
	deploytest.Eventually(t, deployWait, "a successful status of "+sha[:7], func() (bool, error) {
		sts := e.GitHub.Statuses(repoName, sha)
		if len(sts) == 0 {
			return false, nil
		}
		last := sts[len(sts)-1]
		return last.State == "success", fmt.Errorf("last status %+v", last)
	})
	if !deploytest.Serves(e.App(t, "web").HostPort, "v1") {
		t.Fatal("the app does not serve v1")
	}
	do(chromedp.Navigate(base + "/apps/octo/web/web"))
	wait(`document.querySelector("h1") && document.querySelector("h1").textContent.startsWith("web")`)
	shot("6-deployed")

	// GitHub's answer replayed is refused; `keystone app forget` clears the App.
	do(chromedp.Navigate(callback))
	wait(`document.getElementById("setup-error") !== null`)
	forget := exec.CommandContext(t.Context(), keystonetest.Binary(t), "app", "forget")
	forget.Env = []string{"PATH=" + os.Getenv("PATH"), "SUDO_USER=" + cliUser, "DATABASE_URL=" + e.DBURL}
	if out, err := forget.CombinedOutput(); err != nil {
		t.Fatalf("keystone app forget: %v\n%s", err, out)
	}
	for _, w := range firstRunAudit() {
		var n int
		details, _ := json.Marshal(w.details)
		err := e.Store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM audit_events
			WHERE actor = $1 AND action = $2 AND target = $3 AND details @> $4::jsonb`, w.actor, w.action, w.target, string(details)).Scan(&n)
		if err != nil || n < 1 {
			t.Errorf("%s: no %s event by %s on %s with %v (%v)", w.via, w.action, w.actor, w.target, w.details, err)
		}
	}
	t.Logf("from a fresh Keystone to a deployed app in %s (fake GitHub)", time.Since(start).Round(time.Second))
}
