package web_test

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/web"
)

// deploymentFrom reads the deployment a redirect points at.
func (s *site) deploymentFrom(r response) store.Deployment {
	s.t.Helper()
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/deployments/") {
		s.t.Fatalf("want a redirect to the new deployment, got HTTP %d %q\n%.800s", r.status, r.header.Get("Location"), r.body)
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(r.header.Get("Location"), "/deployments/"), 10, 64)
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := s.store.Deployment(s.t.Context(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

func TestDeployerQueuesRedeployAndRollbacks(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("dee")
	page := c.get(s.appPath()).body
	for _, want := range []string{`id="redeploy"`, `id="rollback"`, `name="target"`,
		fmt.Sprintf(`<option value="%d" selected>`, s.first.ID)} {
		if !strings.Contains(page, want) {
			t.Errorf("deployer's app page lacks %s", want)
		}
	}
	token := c.csrf(s.appPath())
	cases := []struct {
		name       string
		path       string
		form       url.Values
		kind       string
		wantTarget int64
	}{
		{"redeploy", "/redeploy", url.Values{}, store.KindRedeploy, s.serving.ID},
		{"rollback to the default", "/rollback", url.Values{}, store.KindRollback, s.first.ID},
		{"rollback to a chosen one", "/rollback", url.Values{"target": {strconv.FormatInt(s.first.ID, 10)}}, store.KindRollback, s.first.ID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.settle()
			before := len(s.audit())
			tc.form.Set("csrf_token", token)
			d := s.deploymentFrom(c.post(s.appPath()+tc.path, tc.form))
			target, err := s.store.Deployment(t.Context(), tc.wantTarget)
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tc.kind || d.Trigger != store.TriggerPage || d.Actor != "dee" || d.State != store.StateQueued ||
				d.TargetDeploymentID != tc.wantTarget || d.SHA != target.SHA {
				t.Fatalf("queued %+v, want a queued %s by dee from the page to #%d (%s)", d, tc.kind, tc.wantTarget, target.SHA)
			}
			// The requester audits the request; the page adds nothing.
			added := s.audit()[before:]
			if len(added) != 1 || added[0].Action != store.AuditDeployRequested || added[0].Actor != "dee" {
				t.Fatalf("audit events added: %+v, want one deployment.requested by dee", added)
			}
			if r := c.get(fmt.Sprintf("/deployments/%d", d.ID)); r.status != 200 || !strings.Contains(r.body, tc.kind) {
				t.Fatalf("new deployment page: HTTP %d", r.status)
			}
		})
	}
}

func TestViewerCannotDeployFromThePage(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("vic")
	page := c.get(s.appPath()).body
	for _, hidden := range []string{`id="redeploy"`, `id="rollback"`, "/redeploy", "/rollback", "Secrets"} {
		if strings.Contains(page, hidden) {
			t.Errorf("viewer's app page shows %s", hidden)
		}
	}
	token := c.csrf(s.appPath())
	for _, action := range []string{"redeploy", "rollback"} {
		r := c.post(s.appPath()+"/"+action, url.Values{"csrf_token": {token}, "target": {strconv.FormatInt(s.first.ID, 10)}})
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "needs the deployer role; you are viewer") {
			t.Fatalf("viewer %s: HTTP %d\n%s", action, r.status, r.body)
		}
		if !s.hasAudit(store.AuditCommandDenied, "vic", "acme/shop/web") {
			t.Errorf("viewer %s not audited as denied", action)
		}
	}
	if n := len(s.requester.Requests()); n != 0 {
		t.Fatalf("the requester was asked %d times for a viewer", n)
	}
}

func TestRefusedRequestsAreShown(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("dee")
	token := c.csrf(s.appPath())
	cases := []struct {
		name   string
		target string
		status int
		want   string
	}{
		{"not a number", "latest", http.StatusBadRequest, `Rollback target &#34;latest&#34; is not a deployment number.`},
		{"a failed deployment", strconv.FormatInt(s.failed.ID, 10), http.StatusConflict,
			fmt.Sprintf("The rollback was not queued: #%d is not a successful deployment of web", s.failed.ID)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.post(s.appPath()+"/rollback", url.Values{"csrf_token": {token}, "target": {tc.target}})
			if r.status != tc.status || !strings.Contains(r.body, tc.want) {
				t.Fatalf("HTTP %d, want %d with %q\n%s", r.status, tc.status, tc.want, r.body)
			}
			if !strings.Contains(r.body, `id="history-h"`) {
				t.Error("the refusal is not shown on the app page")
			}
		})
	}
}

func TestLockedAppIsShownAndItsRequestsRefused(t *testing.T) {
	s := newBareSite(t)
	a, err := storetest.AddApp(t.Context(), s.store.Pool(), store.App{Owner: "acme", Repo: "shop", Name: "web",
		LockedBy: "octocat", LockedReason: "release freeze"})
	if err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	if _, err := storetest.AddDeployment(t.Context(), s.store.Pool(), store.Deployment{AppID: a.ID, State: store.StateSucceeded, FinishedAt: &done}); err != nil {
		t.Fatal(err)
	}
	c := s.signedIn("dee")
	page := c.get(s.appPath()).body
	if !strings.Contains(page, "locked</span> by octocat") || !strings.Contains(page, "release freeze") {
		t.Errorf("lock state not shown:\n%s", page)
	}
	r := c.post(s.appPath()+"/redeploy", url.Values{"csrf_token": {c.csrf(s.appPath())}})
	if r.status != http.StatusConflict || !strings.Contains(r.body, "web is locked by octocat") {
		t.Fatalf("redeploy of a locked app: HTTP %d\n%s", r.status, r.body)
	}
}

func TestWithoutARequesterActionsAreUnavailable(t *testing.T) {
	s := newSite(t, func(o *web.Options) { o.Requester = nil })
	c := s.signedIn("dee")
	page := c.get(s.appPath()).body
	if strings.Contains(page, `id="redeploy"`) || !strings.Contains(page, "not available on this Keystone") {
		t.Errorf("deployer's page without a requester:\n%s", page)
	}
	if r := c.post(s.appPath()+"/redeploy", url.Values{"csrf_token": {c.csrf(s.appPath())}}); r.status != http.StatusServiceUnavailable {
		t.Fatalf("redeploy without a requester: HTTP %d", r.status)
	}
}

func TestCSRFIsCheckedOnEveryAction(t *testing.T) {
	s := newSite(t)
	dee, ada := s.signedIn("dee"), s.signedIn("ada")
	adaToken := ada.csrf("/")
	cases := []struct {
		name   string
		form   url.Values
		header string
		status int
	}{
		{"no token", url.Values{}, "", http.StatusForbidden},
		{"wrong token", url.Values{"csrf_token": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, "", http.StatusForbidden},
		{"another session's token", url.Values{"csrf_token": {adaToken}}, "", http.StatusForbidden},
		{"token in the header", url.Values{}, "own", http.StatusSeeOther},
	}
	paths := signedInActions(t, s)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range paths {
				s.settle()
				before := len(s.requester.Requests())
				req, _ := http.NewRequest(http.MethodPost, s.srv.URL+path, strings.NewReader(tc.form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if tc.header != "" {
					req.Header.Set("X-CSRF-Token", dee.csrf("/"))
				}
				r := dee.do(req)
				want := tc.status
				if strings.Contains(path, "/secrets") && want == http.StatusSeeOther {
					want = http.StatusForbidden // past CSRF, a deployer meets the role check
				}
				if r.status != want {
					t.Fatalf("POST %s: HTTP %d, want %d", path, r.status, want)
				}
				if tc.status == http.StatusForbidden && len(s.requester.Requests()) != before {
					t.Fatalf("POST %s without a valid token reached the requester", path)
				}
			}
		})
	}
}

// signedInActions is the path of every POST route of a signed-in visitor, as
// Mount registers them, with the site's app filled in; signing out comes
// last, as it ends the session.
func signedInActions(t *testing.T, s *site) []string {
	t.Helper()
	var paths []string
	for _, r := range s.routes {
		if r.Method != http.MethodPost || r.Path == "/login" { // the sign-in form has its own token
			continue
		}
		path := strings.NewReplacer(":owner", s.app.Owner, ":repo", s.app.Repo, ":app", s.app.Name).Replace(r.Path)
		if strings.Contains(path, ":") || strings.Contains(path, "*") {
			t.Fatalf("POST route %s has a parameter this test cannot fill", r.Path)
		}
		paths = append(paths, path)
	}
	last := func(p string) int {
		if p == "/logout" {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(paths, func(a, b string) int { return cmp.Compare(last(a), last(b)) })
	if len(paths) < 5 {
		t.Fatalf("POST routes %v: fewer than the five known", paths)
	}
	return paths
}

func TestAdminManagesSecretsWithoutSeeingValues(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("ada")
	token := c.csrf(s.appPath())
	const value = "s3cr3t-value-never-shown"
	r := c.post(s.appPath()+"/secrets", url.Values{"csrf_token": {token}, "key": {"DATABASE_PASSWORD"}, "value": {value + "\r\n"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != s.appPath()+"?done=secret-set#secrets" {
		t.Fatalf("set secret: HTTP %d %q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	stored, err := s.secrets.AppSecrets(t.Context(), s.app.ID)
	if err != nil || stored["DATABASE_PASSWORD"] != value {
		t.Fatalf("stored secrets %v, %v; want DATABASE_PASSWORD = %q (one trailing line break dropped)", stored, err, value)
	}
	if !s.hasAudit(store.AuditSecretSet, "ada", "") {
		t.Fatal("the secret change is not audited with ada as the actor")
	}
	page := c.get(s.appPath() + "?done=secret-set")
	if !strings.Contains(page.body, "<code>DATABASE_PASSWORD</code>") || !strings.Contains(page.body, "Secret saved.") {
		t.Fatalf("the secret's name is not listed:\n%s", page.body)
	}
	if strings.Contains(page.body, value) {
		t.Fatal("the app page shows a secret's value")
	}
	if strings.Contains(s.logs.String(), value) {
		t.Fatal("a secret's value reached the log")
	}

	refusals := []struct {
		name, path string
		form       url.Values
		want       string
	}{
		{"bad name", "/secrets", url.Values{"key": {"1BAD-NAME"}, "value": {value}}, `secret name &#34;1BAD-NAME&#34; is not valid`},
		{"reserved name", "/secrets", url.Values{"key": {"PORT"}, "value": {value}}, "secret name PORT is reserved"},
		{"empty value", "/secrets", url.Values{"key": {"EMPTY"}, "value": {""}}, "secret value is empty"},
		{"unset what is not set", "/secrets/unset", url.Values{"key": {"NEVER_SET"}}, "no secret of that name is set"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("csrf_token", token)
			r := c.post(s.appPath()+tc.path, tc.form)
			if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, tc.want) || strings.Contains(r.body, value) {
				t.Fatalf("HTTP %d, want 422 with %q and no value\n%s", r.status, tc.want, r.body)
			}
		})
	}

	r = c.post(s.appPath()+"/secrets/unset", url.Values{"csrf_token": {token}, "key": {"DATABASE_PASSWORD"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("unset secret: HTTP %d", r.status)
	}
	if names, err := s.secrets.List(t.Context(), "acme", "shop", "web"); err != nil || len(names) != 0 {
		t.Fatalf("secrets after unset: %v, %v", names, err)
	}
}

func TestSecretsAreHiddenWithoutTheSeam(t *testing.T) {
	s := newSite(t, func(o *web.Options) { o.Secrets = nil })
	c := s.signedIn("ada")
	if page := c.get(s.appPath()).body; strings.Contains(page, `id="secrets"`) {
		t.Fatal("the secrets section shows without a Secrets implementation")
	}
	if r := c.post(s.appPath()+"/secrets", url.Values{"csrf_token": {c.csrf("/")}, "key": {"K"}, "value": {"v"}}); r.status != http.StatusServiceUnavailable {
		t.Fatalf("set secret without the seam: HTTP %d", r.status)
	}
}

// An admin sets a preview secret on the app page: it is listed apart and
// never given to production; removing it needs the preview flag too.
func TestAdminSetsPreviewSecretApart(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("ada")
	token := c.csrf(s.appPath())
	r := c.post(s.appPath()+"/secrets", url.Values{"csrf_token": {token}, "key": {"TEST_DB"}, "value": {"preview-db"}, "preview": {"1"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("set preview secret: HTTP %d\n%s", r.status, r.body)
	}
	if stored, err := s.secrets.AppSecrets(t.Context(), s.app.ID); err != nil || len(stored) != 0 {
		t.Fatalf("production gets %v, %v; want no secret", stored, err)
	}
	if names, err := s.secrets.ListPreview(t.Context(), "acme", "shop", "web"); err != nil || strings.Join(names, ",") != "TEST_DB" {
		t.Fatalf("preview secrets %v, %v", names, err)
	}
	page := c.get(s.appPath())
	if !strings.Contains(page.body, `aria-label="Remove preview secret TEST_DB"`) || strings.Contains(page.body, "preview-db") {
		t.Fatalf("the preview secret is not listed apart, or its value shows:\n%s", page.body)
	}
	if r := c.post(s.appPath()+"/secrets/unset", url.Values{"csrf_token": {token}, "key": {"TEST_DB"}}); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("unset without the preview flag: HTTP %d, want 422", r.status)
	}
	if r := c.post(s.appPath()+"/secrets/unset", url.Values{"csrf_token": {token}, "key": {"TEST_DB"}, "preview": {"1"}}); r.status != http.StatusSeeOther {
		t.Fatalf("unset preview secret: HTTP %d", r.status)
	}
}
