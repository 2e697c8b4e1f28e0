package e2e_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

// tab is one headless Chromium tab on the stack's status page.
type tab struct {
	t   *testing.T
	ctx context.Context
	s   *stack
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	webtest.Do(b.t, b.ctx, actions...)
}
func (b *tab) eval(js string) string { b.t.Helper(); return webtest.Eval(b.t, b.ctx, js) }
func (b *tab) open(path string)      { b.t.Helper(); b.do(chromedp.Navigate(b.s.ks.URL + path)) }
func (b *tab) shot(name string)      { b.t.Helper(); webtest.Screenshot(b.t, b.ctx, "e2e-"+name) }

// waitFor waits for a JavaScript condition; the page follows a real
// deploy, so the wait is a deploy's.
func (b *tab) waitFor(js string) { b.t.Helper(); webtest.WaitFor(b.t, b.ctx, js, deployWait) }

func (b *tab) signIn(name string) {
	b.t.Helper()
	b.open("/login")
	b.do(
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#password"), password(name)),
		chromedp.Click(chromedp.CSS("form[action='/login'] button[type=submit]")),
	)
	b.waitFor(`location.pathname === "/" && document.querySelector("h1").textContent === "Apps"`)
}

func (b *tab) signOut() {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS("form.signout button")))
	b.waitFor(`document.body.textContent.includes("You are signed out.")`)
}

// TestBrowserJourney is the status page in Chromium against the real
// binary and a real deploy: a deployer signs in, finds the app, follows a
// deployment held in its image build and sees new lines arrive live, then rolls
// back from the app page and the engine really serves v1 again, with GitHub
// told; a viewer is refused the same rollback (audited) and signs out.
func TestBrowserJourney(t *testing.T) {
	t.Parallel()
	s := newStack(t, keyLine("k1", 1))
	b := &tab{t: t, ctx: webtest.Browser(t, 1280, 900), s: s} // skips (CI unset) or fails without Chromium first
	gate := newDockerGate(t, s.Docker)
	s.env["DOCKER_HOST"] = gate.host
	s.start(t)
	s.addUser(t, "dee", "deployer")
	s.addUser(t, "vic", "viewer")
	v1 := s.deployed(t, appFiles(t, gittest.Behaviour{Version: "1"}), "v1")
	port := s.App(t, "web").HostPort

	live := b.followHeldDeploy(gate)
	if d := s.WaitFinished(t, live, deployWait); d.State != store.StateSucceeded || !deploytest.Serves(port, "2") {
		t.Fatalf("v2 deployment %+v; serving v2: %v", d, deploytest.Serves(port, "2"))
	}
	b.rollBack(v1, port)
	b.signOut()
	b.shot("07-signed-out")
	b.refusedAsViewer()
}

// followHeldDeploy pushes v2 and holds its image build at the Docker gate,
// opens the running deployment as the deployer, then lets the build go and
// watches its lines arrive without a reload. It returns the deployment's id.
func (b *tab) followHeldDeploy(gate *dockerGate) int64 {
	t, s := b.t, b.s
	gate.shut()
	defer gate.release()
	s.push(t, appFiles(t, gittest.Behaviour{Version: "2", BuildStep: true, BuildPrint: []string{"compiling v2"}}), "v2")
	deploytest.Eventually(t, deployWait, "v2's build to reach Docker and be held", func() (bool, error) {
		return gate.held.Load() > 0, nil
	})
	id := s.lastDeploymentID(t)

	b.open("/")
	b.waitFor(`location.pathname === "/login"`)
	b.shot("01-sign-in")
	b.signIn("dee")
	if row := b.eval(`document.querySelector("table.cards tbody tr").textContent`); !strings.Contains(row, repoName) {
		t.Fatalf("apps table row: %q", row)
	}
	b.shot("02-apps")
	b.do(chromedp.Click(chromedp.CSS(`a[href="/apps/octo/web/web"]`)))
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent.startsWith("web")`)
	b.shot("03-app")
	b.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/deployments/%d"]`, id))))
	b.waitFor(`document.getElementById("live-status") && document.getElementById("live-status").textContent === "Following live…"`)
	before, err := strconv.Atoi(b.eval(`String(document.querySelectorAll("#log .line").length)`))
	if err != nil {
		t.Fatal(err)
	}
	b.eval(`window.e2eSamePage = "yes"`) // gone if the page reloads
	b.shot("04-deployment-held")

	if strings.Contains(b.eval(`document.getElementById("log").textContent`), "compiling v2") {
		t.Fatal("the build's output is on the page while the build is held: the gate proves nothing")
	}
	gate.release()
	b.waitFor(fmt.Sprintf(`document.querySelectorAll("#log .line").length > %d`, before))
	b.waitFor(`document.body.textContent.includes("compiling v2")`)
	b.waitFor(`document.getElementById("live-status").textContent.startsWith("Finished: succeeded")`)
	// The facts and steps follow the end without a reload: the cleanup step is
	// listed, and Finished is no longer "not yet".
	b.waitFor(`document.getElementById("live-status").textContent === "Finished: succeeded." &&
		document.getElementById("steps").textContent.includes("cleanup")`)
	if facts := b.eval(`document.getElementById("facts").textContent`); strings.Contains(facts, "not yet") || !strings.Contains(facts, "healthy") {
		t.Fatalf("the facts after the end: %q", facts)
	}
	if same := b.eval(`String(window.e2eSamePage)`); same != "yes" {
		t.Fatalf("the page reloaded (marker %q): the lines did not arrive live", same)
	}
	b.shot("05-deployment-live")
	return id
}

// rollBack presses Roll back on the app page with its default target (v1's
// deployment); the engine really serves v1 again and GitHub gets v1's
// statuses of the rollback.
func (b *tab) rollBack(v1 string, port int) {
	t, s := b.t, b.s
	statusesBefore := len(s.GitHub.Statuses(repoName, v1))
	b.open("/apps/octo/web/web")
	b.waitFor(`document.getElementById("rollback") !== null`)
	if target, first := b.eval(`document.getElementById("rollback-target").value`), s.Deployments(t, "web")[0].ID; target != fmt.Sprint(first) {
		t.Fatalf("default rollback target #%s, want v1's deployment #%d", target, first)
	}
	b.do(chromedp.Click(chromedp.CSS("#rollback")))
	b.waitFor(`/^\/deployments\/\d+$/.test(location.pathname) && location.pathname !== "/deployments/` +
		fmt.Sprint(s.Deployments(t, "web")[1].ID) + `"`)
	id, err := strconv.ParseInt(strings.TrimPrefix(b.eval(`location.pathname`), "/deployments/"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	b.shot("06-rollback")
	d := s.WaitFinished(t, id, deployWait)
	if d.Kind != store.KindRollback || d.Actor != "dee" || d.Trigger != store.TriggerPage || d.SHA != v1 || d.State != store.StateSucceeded {
		t.Fatalf("the page's rollback: %+v", d)
	}
	if !deploytest.Serves(port, "1") {
		t.Fatal("after the rollback the app does not serve v1")
	}
	deploytest.Eventually(t, time.Minute, "GitHub to get the rollback's final status on v1", func() (bool, error) {
		sts := s.GitHub.Statuses(repoName, v1)
		return len(sts) > statusesBefore && sts[len(sts)-1].State == "success", fmt.Errorf("statuses %+v", sts)
	})
	b.open(fmt.Sprintf("/deployments/%d", id))
	b.waitFor(`document.querySelector("h1").textContent.toLowerCase().includes("succeeded")`)
}

// refusedAsViewer: the viewer sees no deploy controls; a rollback posted
// anyway with the viewer's own CSRF token answers 403, queues nothing and
// is audited as command.denied.
func (b *tab) refusedAsViewer() {
	t, s := b.t, b.s
	b.signIn("vic")
	b.open("/apps/octo/web/web")
	b.waitFor(`document.getElementById("history-h") !== null`)
	if n := b.eval(`String(document.querySelectorAll("#rollback, #redeploy").length)`); n != "0" {
		t.Fatalf("the viewer sees %s deploy controls", n)
	}
	b.shot("08-viewer-app")
	before := len(s.Deployments(t, "web"))
	status := b.eval(`fetch("/apps/octo/web/web/rollback", {method: "POST", redirect: "manual",
		body: new URLSearchParams({csrf_token: document.querySelector("input[name=csrf_token]").value})})
		.then(r => String(r.status))`)
	if status != "403" {
		t.Fatalf("the viewer's rollback answered %s, want 403", status)
	}
	if n := len(s.Deployments(t, "web")); n != before {
		t.Fatalf("the viewer's rollback made %d deployments", n-before)
	}
	if n := countEvents(t, s, auditWant{actor: "vic", action: "command.denied", target: appKey,
		details: map[string]any{"command": "rollback", "trigger": "page", "role": "viewer"}}); n != 1 {
		t.Fatalf("%d command.denied events of vic's rollback, want 1", n)
	}
	b.signOut()
	b.shot("09-viewer-signed-out")
}
