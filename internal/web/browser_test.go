package web_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

// browser drives one headless Chromium tab against a site.
type browser struct {
	t    *testing.T
	ctx  context.Context
	site *site
}

func (s *site) browser(width, height int) *browser {
	return &browser{t: s.t, ctx: webtest.Browser(s.t, width, height), site: s}
}

// do runs actions with a deadline.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	webtest.Do(b.t, b.ctx, actions...)
}

func (b *browser) open(path string) { b.t.Helper(); b.do(chromedp.Navigate(b.site.srv.URL + path)) }

func (b *browser) text(css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatalf("browser: text of %s: %v", css, err)
	}
	return s
}

func (b *browser) eval(js string) string { b.t.Helper(); return webtest.Eval(b.t, b.ctx, js) }

func (b *browser) path() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return strings.TrimPrefix(loc, b.site.srv.URL)
}

// waitFor waits for a JavaScript condition on the page.
func (b *browser) waitFor(js string) { b.t.Helper(); webtest.WaitFor(b.t, b.ctx, js, 15*time.Second) }

func (b *browser) signIn(name string) {
	b.t.Helper()
	b.do(
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#password"), password(name)),
		chromedp.Click(chromedp.CSS("form[action='/login'] button[type=submit]")),
	)
}

func (b *browser) signOut() {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS("form.signout button")))
	b.waitFor(`document.body.textContent.includes("You are signed out.")`)
}

// TestBrowserSignInFollowAndRollBack is the status page as a person uses it,
// in headless Chromium: sign in, find the app, follow a running deployment's
// log live, roll back as a deployer, be refused as a viewer, sign out. Each
// page is saved as a screenshot under .artifacts/screenshots.
func TestBrowserSignInFollowAndRollBack(t *testing.T) {
	s := newSite(t)
	b := s.browser(1280, 900)
	b.signInAndFindTheApp()
	b.followTheLiveLog()
	b.rollBack()
	b.signOut()
	webtest.Screenshot(t, b.ctx, "06-signed-out")
	b.open("/")
	b.waitFor(`location.pathname === "/login"`)
	b.refusedAsViewer()
	b.signOut()
	b.adminPages()
}

// signInAndFindTheApp: an anonymous visit lands on the sign-in form; the
// deployer signs in, sees the app list and opens the app.
func (b *browser) signInAndFindTheApp() {
	t := b.t
	b.open("/")
	b.waitFor(`location.pathname === "/login"`)
	webtest.Screenshot(t, b.ctx, "01-sign-in")
	b.signIn("dee")
	b.waitFor(`location.pathname === "/" && document.querySelector("h1").textContent === "Apps"`)
	if row := b.text("table.cards tbody tr"); !strings.Contains(row, "acme/shop") || !strings.Contains(row, "bbbbbbb") {
		t.Fatalf("apps table row: %q", row)
	}
	webtest.Screenshot(t, b.ctx, "02-apps")
	b.do(chromedp.Click(chromedp.CSS(`a[href="/apps/acme/shop/web"]`)))
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent.startsWith("web")`)
	webtest.Screenshot(t, b.ctx, "03-app")
}

// followTheLiveLog opens the running deployment: a line the deploy writes
// arrives without a reload, escaped and coloured, and the end is shown.
func (b *browser) followTheLiveLog() {
	t, s := b.t, b.site
	b.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/deployments/%d"]`, s.live.ID))))
	b.waitFor(`document.getElementById("live-status") && document.getElementById("live-status").textContent === "Following live…"`)
	hostile := "step 2/2: \x1b[32mcompiled\x1b[0m <img src=x onerror=alert(1)>"
	if err := storetest.AddLogLines(t.Context(), s.store.Pool(), s.live.ID, hostile); err != nil {
		t.Fatal(err)
	}
	b.waitFor(`document.getElementById("L3") !== null`)
	if got := b.text("#L3"); got != "step 2/2: compiled <img src=x onerror=alert(1)>" {
		t.Fatalf("live line text %q", got)
	}
	if n := b.eval(`String(document.querySelectorAll("#log img, #log script").length)`); n != "0" {
		t.Fatalf("the live log turned text into %s elements", n)
	}
	if cls := b.eval(`document.querySelector("#L3 span").className`); cls != "ansi-green" {
		t.Fatalf("coloured text has class %q, want ansi-green", cls)
	}
	webtest.Screenshot(t, b.ctx, "04-deployment-live")
	if err := storetest.FinishDeployment(t.Context(), s.store.Pool(), s.live.ID, store.StateSucceeded, "Deployed in 3.2s"); err != nil {
		t.Fatal(err)
	}
	b.waitFor(`document.getElementById("live-status").textContent.startsWith("Finished: succeeded")`)
	if got := b.text("#description"); got != "Deployed in 3.2s" {
		t.Fatalf("description after the end: %q", got)
	}
	// The facts are taken from the server again, without a reload.
	b.eval(`window.keystoneSamePage = "yes"`)
	b.waitFor(`document.getElementById("live-status").textContent === "Finished: succeeded."`)
	if facts := b.text("#facts"); strings.Contains(facts, "not yet") || b.eval(`String(window.keystoneSamePage)`) != "yes" {
		t.Fatalf("after the end, without a reload, the facts still say %q", facts)
	}
}

// rollBack presses Roll back with the default target and lands on the
// queued rollback, made by the deployer from the page.
func (b *browser) rollBack() {
	t, s := b.t, b.site
	b.open(s.appPath())
	target := b.eval(`document.getElementById("rollback-target").value`)
	b.do(chromedp.Click(chromedp.CSS("#rollback")))
	b.waitFor(`location.pathname.startsWith("/deployments/") && document.querySelector("h1").textContent.includes("queued")`)
	id, err := strconv.ParseInt(strings.TrimPrefix(b.path(), "/deployments/"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.store.Deployment(t.Context(), id)
	if err != nil || d.Kind != store.KindRollback || d.Actor != "dee" || d.Trigger != store.TriggerPage || strconv.FormatInt(d.TargetDeploymentID, 10) != target {
		t.Fatalf("the rollback queued %+v, %v; want a rollback by dee from the page to #%s", d, err, target)
	}
	webtest.Screenshot(t, b.ctx, "05-rollback-queued")
}

// refusedAsViewer: a viewer sees no deploy controls, and a rollback posted
// anyway (a forged form with the viewer's own CSRF token) is refused.
func (b *browser) refusedAsViewer() {
	t, s := b.t, b.site
	b.signIn("vic")
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent === "Apps"`)
	b.open(s.appPath())
	b.waitFor(`document.getElementById("history-h") !== null`)
	if n := b.eval(`String(document.querySelectorAll("#rollback, #redeploy, form[action$='/rollback']").length)`); n != "0" {
		t.Fatalf("the viewer sees %s deploy controls", n)
	}
	webtest.Screenshot(t, b.ctx, "07-viewer-app")
	before := len(s.requester.Requests())
	b.eval(`(() => {
		const f = document.createElement("form");
		f.method = "post";
		f.action = "` + s.appPath() + `/rollback";
		f.appendChild(document.querySelector("input[name=csrf_token]").cloneNode());
		document.body.appendChild(f);
		f.submit();
		return "submitted";
	})()`)
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent === "Not allowed"`)
	if msg := b.text(".error"); !strings.Contains(msg, "needs the deployer role; you are viewer") {
		t.Fatalf("refusal text %q", msg)
	}
	if len(s.requester.Requests()) != before {
		t.Fatal("the viewer's rollback reached the requester")
	}
	webtest.Screenshot(t, b.ctx, "08-viewer-refused")
}

// adminPages: the admin's audit log shows what happened, with the users as
// actors, and the users page lists them.
func (b *browser) adminPages() {
	t := b.t
	b.signIn("ada")
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent === "Apps"`)
	b.open("/audit")
	b.waitFor(`document.querySelector("h1").textContent === "Audit log"`)
	audit := b.text("table")
	for _, want := range []string{"deployment.requested", "command.denied", "logout", "login.succeeded"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit page lacks %s", want)
		}
	}
	webtest.Screenshot(t, b.ctx, "09-audit")
	b.open("/users")
	b.waitFor(`document.querySelector("h1").textContent === "Users"`)
	webtest.Screenshot(t, b.ctx, "10-users")
}

// TestBrowserOnAPhone: the pages fit a phone's width (no sideways
// scrolling of the page) and the app list becomes labelled cards.
func TestBrowserOnAPhone(t *testing.T) {
	s := newSite(t)
	b := s.browser(1280, 900)
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	b.open("/login")
	b.signIn("dee")
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent === "Apps"`)
	for _, path := range []string{"/", s.appPath(), fmt.Sprintf("/deployments/%d", s.serving.ID)} {
		b.open(path)
		b.waitFor(`document.readyState === "complete"`)
		if w := b.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
			t.Errorf("%s is %spx wide on a 390px phone", path, w)
		}
	}
	b.open("/")
	b.waitFor(`document.readyState === "complete"`)
	if d := b.eval(`getComputedStyle(document.querySelector("table.cards tr")).display`); d != "block" {
		t.Errorf("app rows display as %q on a phone, want cards (block)", d)
	}
	webtest.Screenshot(t, b.ctx, "11-apps-phone")
	b.open(s.appPath())
	b.waitFor(`document.readyState === "complete"`)
	webtest.Screenshot(t, b.ctx, "12-app-phone")
}

// TestBrowserKeyboard: the sign-in form works from the keyboard alone, and
// the skip link is the first stop of a page and moves focus to its content.
func TestBrowserKeyboard(t *testing.T) {
	s := newSite(t)
	b := s.browser(1280, 900)
	// A headless tab has no window focus: emulate it so Tab moves focus.
	if _, err := chromedp.Call(b.ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	b.open("/login")
	b.waitFor(`document.activeElement && document.activeElement.id === "name"`) // autofocus
	b.do(chromedp.KeyEvent("vic\t" + password("vic") + "\r"))
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent === "Apps"`)
	b.do(chromedp.KeyEvent("\t"))
	if got := b.eval(`document.activeElement.className + " " + document.activeElement.getAttribute("href")`); got != "skip #main" {
		t.Fatalf("first tab stop %q, want the skip link", got)
	}
	b.do(chromedp.KeyEvent("\r"))
	b.waitFor(`document.activeElement.id === "main"`)
}
