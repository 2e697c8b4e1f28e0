package web_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

// TestBrowserPreviewsUnderTheirApp: the apps page lists each pull
// request's preview right under the app it previews (after another app of
// the same repository that sorts first), saying which pull request and
// branch it previews, on a desktop and on a phone.
func TestBrowserPreviewsUnderTheirApp(t *testing.T) {
	s := newSite(t)
	ctx, db := t.Context(), s.store.Pool()
	if _, err := storetest.AddApp(ctx, db, store.App{Owner: "acme", Repo: "shop", Name: "api", HostPort: 9004}); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(-time.Hour)
	fin := hour.Add(9 * time.Second)
	for _, p := range []struct {
		pr    int
		head  string
		state string
	}{{12, "fix/checkout", store.StateRunning}, {7, "feature/login", store.StateSucceeded}} {
		var preview store.App
		err := s.store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
			var err error
			preview, err = q.UpsertPreview(ctx, s.app, p.pr, p.head, json.RawMessage(`{}`))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		d := store.Deployment{AppID: preview.ID, Kind: store.KindDeploy, SHA: strings.Repeat("e", 40), State: p.state,
			Description: "Building eeeeeee", QueuedAt: hour, StartedAt: &hour}
		if p.state == store.StateSucceeded {
			d.Description, d.HealthStatus, d.FinishedAt = "Deployed in 9.0s", 200, &fin
		}
		if _, err := storetest.AddDeployment(ctx, db, d); err != nil {
			t.Fatal(err)
		}
	}
	b := s.browser(1280, 900)
	b.open("/login")
	b.signIn("dee")
	b.waitFor(`document.querySelector("h1") && document.querySelector("h1").textContent === "Apps"`)
	const names = `Array.from(document.querySelectorAll("table.cards tbody tr")).map(r => r.querySelector('a[href^="/apps/"]').textContent.trim()).join(",")`
	if got := b.eval(names); got != "api,web,web-pr-7,web-pr-12" {
		t.Errorf("apps listed as %q, want each preview under its app", got)
	}
	for _, want := range []string{"preview of #7 (feature/login)", "preview of #12 (fix/checkout)"} {
		if !strings.Contains(b.text("table.cards tbody"), want) {
			t.Errorf("the apps page does not say %q", want)
		}
	}
	webtest.Screenshot(t, b.ctx, "13-apps-previews")
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	b.open("/")
	b.waitFor(`document.readyState === "complete"`)
	if got := b.eval(names); got != "api,web,web-pr-7,web-pr-12" {
		t.Errorf("on a phone apps listed as %q, want each preview under its app", got)
	}
	webtest.Screenshot(t, b.ctx, "14-apps-previews-phone")
}
