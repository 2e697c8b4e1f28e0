package web_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

// TestBrowserActionsWhileADeploymentRuns, in headless Chromium: while the
// seed's deployment runs, the app page names it and its step, Redeploy is
// disabled and a redeploy forced past the button is refused (409); a form
// shows it is sending; when the deployment ends the page re-enables
// Redeploy without a reload; Roll back stays available throughout.
func TestBrowserActionsWhileADeploymentRuns(t *testing.T) {
	s := newSite(t)
	b := s.browser(1280, 900)
	b.open("/login")
	b.signIn("dee")
	b.waitFor(`location.pathname === "/"`)
	b.open(s.appPath())
	b.waitFor(`document.getElementById("in-flight") !== null`)
	if got := b.text("#in-flight"); !strings.Contains(got, fmt.Sprintf("Deployment #%d", s.live.ID)) || !strings.Contains(got, "running, at step build") {
		t.Fatalf("in-flight notice %q", got)
	}
	if b.eval(`String(document.getElementById("redeploy").disabled)`) != "true" || b.eval(`String(document.getElementById("rollback").disabled)`) != "false" {
		t.Fatal("want Redeploy disabled and Roll back enabled while a deployment runs")
	}
	webtest.Screenshot(t, b.ctx, "20-app-deployment-running")

	// A forced POST: the button re-enabled by hand and pressed.
	before := len(s.requester.Requests())
	b.eval(`(() => { const r = document.getElementById("redeploy"); r.disabled = false; r.click(); return "clicked"; })()`)
	b.waitFor(`document.querySelector("p.error") !== null`)
	if msg := b.text("p.error"); !strings.Contains(msg, fmt.Sprintf("deployment #%d (update) is running, at step build", s.live.ID)) {
		t.Fatalf("refusal %q", msg)
	}
	if len(s.requester.Requests()) != before {
		t.Fatal("the forced redeploy reached the requester")
	}
	webtest.Screenshot(t, b.ctx, "21-redeploy-refused")

	// The live page re-enables Redeploy when the deployment ends.
	b.open(s.appPath())
	b.waitFor(`document.getElementById("in-flight") !== null`)
	if err := storetest.FinishDeployment(t.Context(), s.store.Pool(), s.live.ID, store.StateSucceeded, "Deployed"); err != nil {
		t.Fatal(err)
	}
	b.waitFor(`!document.getElementById("redeploy").disabled && document.getElementById("in-flight-state").textContent.startsWith("finished")`)
	webtest.Screenshot(t, b.ctx, "22-deployment-ended")

	// A form being sent shows it and cannot be sent twice.
	b.eval(`(() => { document.querySelector("form.pending-form").addEventListener("submit", e => e.preventDefault()); return "held"; })()`)
	b.do(chromedp.Click(chromedp.CSS("#redeploy")))
	b.waitFor(`document.getElementById("redeploy").disabled && document.getElementById("redeploy").textContent === "Sending…"`)
	if len(s.requester.Requests()) != before {
		t.Fatal("a held form was sent")
	}

	// Roll back is the emergency exit: available, and queued.
	b.do(chromedp.Click(chromedp.CSS("#rollback")))
	b.waitFor(`location.pathname.startsWith("/deployments/")`)
	if reqs := s.requester.Requests(); len(reqs) != before+1 || reqs[len(reqs)-1].Kind != store.KindRollback {
		t.Fatalf("requests after Roll back: %+v", reqs[before:])
	}
}
