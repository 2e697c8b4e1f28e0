package web_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/web"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
	if t.Failed() {
		t.Logf("%s:\n%s", what, body)
	}
}

func mustNotContain(t *testing.T, what, body string, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(body, u) {
			t.Errorf("%s contains %q", what, u)
		}
	}
}

func TestOverviewShowsEveryApp(t *testing.T) {
	s := newSite(t)
	r := s.signedIn("vic").get("/")
	if r.status != http.StatusOK {
		t.Fatalf("GET / = %d", r.status)
	}
	mustContain(t, "overview", r.body,
		`<a href="/apps/acme/shop/web">web</a>`,
		`<a href="https://github.example/acme/shop">acme/shop</a>`,
		`<code>main</code>`,
		`href="https://github.example/acme/shop/commit/`+strings.Repeat("b", 40)+`"`, `<code>bbbbbbb</code>`,
		`<a href="http://apps.example:9001/">http://apps.example:9001/</a>`,
		`healthy (HTTP 200 after 0.9s)`,
		`<span class="badge run">running</span>`, // the newest deployment
		fmt.Sprintf(`href="/deployments/%d"`, s.live.ID),
		`1 hour ago</time>`, `UTC</span>`,
	)
}

func TestOverviewWithoutAppsSaysWhatToDo(t *testing.T) {
	s := newBareSite(t)
	r := s.signedIn("vic").get("/")
	mustContain(t, "empty overview", r.body, "No apps yet", ".keystone.yml", "health_check_path")
}

func TestAppPage(t *testing.T) {
	s := newSite(t)
	r := s.signedIn("vic").get(s.appPath())
	mustContain(t, "app page", r.body,
		"<h1>web</h1>",
		fmt.Sprintf(`<a href="/deployments/%d">deployment #%d</a>`, s.serving.ID, s.serving.ID),
		"not locked",
		// history: kind, SHA, who, result, duration
		fmt.Sprintf(`<a href="/deployments/%d">#%d</a>`, s.failed.ID, s.failed.ID),
		`<code>ccccccc</code>`, "mallory", "via push", `<span class="badge bad">failed</span>`,
		"Health check failed: GET /healthz 500 after 30s", "12.0s",
		// container state from Docker, output coloured and escaped
		`<span class="badge ok">running</span>`, "keystone/acme-shop-web:abc",
		`<span class="ansi-red">GET /healthz 200</span>`,
	)
}

// TestAppPageListsForeignContainers: containers carrying the app's labels
// that Keystone did not create are listed, escaped, with what Keystone does
// about them (nothing), whether or not a container of the app runs.
func TestAppPageListsForeignContainers(t *testing.T) {
	foreign := []string{"3f2a1b9c0d4e <evil> (mallory/x:latest, running)"}
	for _, st := range []web.ContainerState{{State: "running", Image: "img", Foreign: foreign}, {Foreign: foreign}} {
		s := newSite(t, func(o *web.Options) { o.Containers = webtest.Containers{Container: st} })
		r := s.signedIn("vic").get(s.appPath())
		mustContain(t, "app page", r.body, `id="foreign-containers"`, "Keystone did not create them",
			"<code>3f2a1b9c0d4e &lt;evil&gt; (mallory/x:latest, running)</code>")
	}
}

func TestAppPageWhenDockerFails(t *testing.T) {
	cases := []struct {
		name       string
		containers web.Containers
		want       string
	}{
		{"unreachable", webtest.Containers{Err: errors.New("dial unix /var/run/docker.sock: connect: no such file")}, "Docker unreachable"},
		{"no container", webtest.Containers{}, "No container is running for this app."},
		{"not wired", nil, "Container state is not available on this Keystone."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, func(o *web.Options) { o.Containers = tc.containers })
			r := s.signedIn("vic").get(s.appPath())
			if r.status != http.StatusOK {
				t.Fatalf("GET app page = %d", r.status)
			}
			mustContain(t, "app page", r.body, tc.want, `id="history-h"`)
			mustNotContain(t, "app page", r.body, "docker.sock")
		})
	}
}

func TestAppHistoryIsPaged(t *testing.T) {
	s := newSite(t)
	for range 60 {
		if _, err := addDeployment(s, store.StateSucceeded); err != nil {
			t.Fatal(err)
		}
	}
	c := s.signedIn("vic")
	first := c.get(s.appPath()).body
	if n := strings.Count(first, `<th scope="row" data-label="#">`); n != 50 {
		t.Fatalf("first page shows %d deployments, want 50", n)
	}
	i := strings.Index(first, s.appPath()+"?before=")
	if i < 0 {
		t.Fatal("no link to older deployments")
	}
	older := first[i : i+strings.IndexByte(first[i:], '"')]
	second := c.get(older).body
	if n := strings.Count(second, `<th scope="row" data-label="#">`); n != 14 {
		t.Fatalf("second page shows %d deployments, want 14", n)
	}
	mustContain(t, "second page", second, fmt.Sprintf(`#%d</a>`, s.first.ID), ">Newest</a>")
	mustNotContain(t, "second page", second, "?before=")
}

func TestDeploymentPageEscapesTheLog(t *testing.T) {
	s := newSite(t)
	r := s.signedIn("vic").get(fmt.Sprintf("/deployments/%d", s.serving.ID))
	mustContain(t, "deployment page", r.body,
		"Deployment #", `<span class="badge ok">succeeded</span>`,
		"healthy (HTTP 200 after 0.9s)",
		"<th scope=\"row\" data-label=\"Step\">fetch</th>", "12.0s",
		"&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;",
		`<span class="ansi-green ansi-bold">Successfully built</span> abc done`,
		fmt.Sprintf(`href="/deployments/%d/log"`, s.serving.ID),
	)
	mustNotContain(t, "deployment page", r.body, "<script>alert", "\x1b", "0;title", "data-events", "live.js")
}

// TestDeploymentPageShowsTheSwitch: a deployment switched through the
// router shows what the old version drained and failed; one that was not
// shows no switch line.
func TestDeploymentPageShowsTheSwitch(t *testing.T) {
	s := newSite(t)
	if _, err := s.store.SetDeploymentDrain(context.Background(), s.serving.ID, 7, 0); err != nil {
		t.Fatal(err)
	}
	c := s.signedIn("vic")
	mustContain(t, "switched deployment", c.get(fmt.Sprintf("/deployments/%d", s.serving.ID)).body,
		`<dt>Switch</dt><dd id="switch">no downtime: 7 in-flight requests drained, 0 failed</dd>`)
	mustNotContain(t, "deployment without a switch", c.get(fmt.Sprintf("/deployments/%d", s.first.ID)).body, `id="switch"`)
}

func TestRunningDeploymentPageFollowsLive(t *testing.T) {
	s := newSite(t)
	r := s.signedIn("vic").get(fmt.Sprintf("/deployments/%d", s.live.ID))
	mustContain(t, "running deployment page", r.body,
		fmt.Sprintf(`data-events="/deployments/%d/events?after=2"`, s.live.ID),
		`<script src="/static/live.js?v=`, `<span class="badge run">running</span>`, "Building ddddddd")
}

func TestPlainLog(t *testing.T) {
	s := newSite(t)
	r := s.signedIn("vic").get(fmt.Sprintf("/deployments/%d/log", s.serving.ID))
	want := "Step 1/3 : FROM scratch\n<script>alert('log')</script>\nSuccessfully built abc done\n"
	if r.status != http.StatusOK || r.body != want {
		t.Fatalf("plain log: HTTP %d\n%q\nwant\n%q", r.status, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("plain log without nosniff: a browser could sniff it as HTML")
	}
}

func TestAuditPageIsPagedForAdmins(t *testing.T) {
	s := newSite(t)
	for i := range 120 {
		err := s.store.AppendAudit(t.Context(), store.AuditEvent{Actor: "octocat", Action: store.AuditCommandAccepted,
			Target: "acme/shop/web", Details: map[string]any{"n": i, "command": "<b>status</b>"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	c := s.signedIn("ada")
	first := c.get("/audit").body
	if n := strings.Count(first, `<th scope="row" data-label="#">`); n != 100 {
		t.Fatalf("first audit page shows %d events, want 100", n)
	}
	mustContain(t, "audit page", first, "<code>login.succeeded</code>", "<code>command.accepted</code>",
		"&lt;b&gt;status&lt;/b&gt;", "<dt>n</dt><dd>119</dd>")
	i := strings.Index(first, "/audit?before=")
	if i < 0 {
		t.Fatal("no link to older events")
	}
	second := c.get(first[i : i+strings.IndexByte(first[i:], '"')]).body
	// 3 users added, 120 commands, then ada's sign-in: 124 events.
	if n := strings.Count(second, `<th scope="row" data-label="#">`); n != 24 {
		t.Fatalf("second audit page shows %d events, want 24", n)
	}
	mustContain(t, "second audit page", second, "<code>user.added</code>", "<dt>n</dt><dd>0</dd>", ">Newest</a>")
}

func addDeployment(s *site, state string) (store.Deployment, error) {
	return storetest.AddDeployment(s.t.Context(), s.store.Pool(), store.Deployment{AppID: s.app.ID, State: state})
}

func TestUsersPageShowsNoHashes(t *testing.T) {
	s := newSite(t)
	r := s.signedIn("ada").get("/users")
	mustContain(t, "users page", r.body, `data-label="Name">ada</th>`, `data-label="Role">deployer</td>`, "keystone user add")
	mustNotContain(t, "users page", r.body, "$argon2id", password("ada"))
}
