package conversation_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/conversation"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/store"
)

// ghDeploymentOf returns the fake's GitHub Deployment whose payload names
// Keystone deployment id, failing the test unless there is exactly one.
func ghDeploymentOf(t *testing.T, gh *githubtest.Server, repo string, id int64) githubtest.Deployment {
	t.Helper()
	var found []githubtest.Deployment
	for _, d := range gh.Deployments(repo) {
		var m struct {
			ID int64 `json:"keystone_deployment_id"`
		}
		if json.Unmarshal(d.Payload, &m) == nil && m.ID == id {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d GitHub deployments of Keystone deployment %d, want 1", len(found), id)
	}
	return found[0]
}

func deploymentStates(d githubtest.Deployment) string {
	var s []string
	for _, st := range d.Statuses {
		s = append(s, st.State)
	}
	return strings.Join(s, " ")
}

// TestEveryDeploymentIsAGitHubDeployment: a push that succeeds, one that
// fails, one that succeeds and a rollback are each one GitHub Deployment of
// their SHA in environment web (production), with one status per state in
// order, the deployment page as log_url and the app URL while it is or will
// be what serves; each success marks the one it replaced inactive, a failure
// leaves it serving. Keystone's own pending commit status is on every SHA
// when its deployment is created, so the fake's 409 rule is met each time.
func TestEveryDeploymentIsAGitHubDeployment(t *testing.T) {
	e := newEnv(t)
	d1 := e.pushDeploy(sha1, "success")
	d2 := e.pushDeploy(sha2, "unhealthy")
	sha3 := strings.Repeat("3", 40)
	d3 := e.pushDeploy(sha3, "success")
	rb, err := e.engine.create(t.Context(), e.web.ID, store.KindRollback, sha1, "alice", store.TriggerComment, "")
	if err != nil {
		t.Fatal(err)
	}
	rb = e.engine.run(rb, "success")
	outboxtest.WaitIdle(t, e.st, 20*time.Second)

	if n, want := len(e.gh.Deployments(fullRepo)), 4; n != want {
		t.Fatalf("%d GitHub deployments, want %d: one per Keystone deployment", n, want)
	}
	want := []struct {
		d      store.Deployment
		states string
	}{
		{d1, "queued in_progress success inactive"},
		{d2, "queued in_progress failure"},
		{d3, "queued in_progress success inactive"},
		{rb, "queued in_progress success"},
	}
	for _, w := range want {
		g := ghDeploymentOf(t, e.gh, fullRepo, w.d.ID)
		if g.SHA != w.d.SHA || g.Environment != "web" || !g.ProductionEnvironment || g.TransientEnvironment || g.Task != "deploy" {
			t.Errorf("GitHub deployment of %d = %+v, want %s in production environment web", w.d.ID, g, w.d.SHA[:7])
		}
		if got := deploymentStates(g); got != w.states {
			t.Errorf("statuses of deployment %d = %q, want %q", w.d.ID, got, w.states)
		}
		page := fmt.Sprintf("https://keystone.example/deployments/%d", w.d.ID)
		for _, st := range g.Statuses {
			wantURL := ""
			if st.State == "queued" || st.State == "in_progress" || st.State == "success" {
				wantURL = "http://apps.example:9001/"
			}
			if st.LogURL != page || st.EnvironmentURL != wantURL {
				t.Errorf("deployment %d status %s: log_url %q environment_url %q, want %q and %q",
					w.d.ID, st.State, st.LogURL, st.EnvironmentURL, page, wantURL)
			}
		}
	}
	last := ghDeploymentOf(t, e.gh, fullRepo, d3.ID).Statuses
	if got := last[len(last)-1].Description; got != fmt.Sprintf("Replaced by #%d (1111111)", rb.ID) {
		t.Errorf("inactive description %q", got)
	}
	if got := ghDeploymentOf(t, e.gh, fullRepo, d2.ID).Statuses[2].Description; !strings.HasPrefix(got, "Health check failed") {
		t.Errorf("failure description %q", got)
	}
	for _, r := range e.gh.RequestsTo("POST", "/repos/acme/web/deployments") {
		if r.Status/100 != 2 {
			t.Errorf("GitHub answered %d to %s %s: %s", r.Status, r.Method, r.Path, r.Body)
		}
	}
}

// TestDeploymentStatusPerStateNotPerStep: steps change the commit status,
// not the deployment status; a superseded deployment becomes inactive.
func TestDeploymentStatusPerStateNotPerStep(t *testing.T) {
	e := newEnv(t)
	d, err := e.engine.create(t.Context(), e.web.ID, store.KindUpdate, sha1, "octocat", store.TriggerPush, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"fetch", "build", "start", "health"} {
		d = e.engine.move(d, `state = 'running', step = $2, description = $3`, step, "Step "+step)
	}
	d2, err := e.engine.create(t.Context(), e.web.ID, store.KindUpdate, sha2, "octocat", store.TriggerPush, "")
	if err != nil {
		t.Fatal(err)
	}
	e.engine.move(d2, `state = 'superseded', description = 'Not deployed: superseded by 3333333', finished_at = now()`)
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if got := deploymentStates(ghDeploymentOf(t, e.gh, fullRepo, d.ID)); got != "queued in_progress" {
		t.Errorf("statuses of a running deployment = %q, want one per state", got)
	}
	if n := len(e.gh.Statuses(fullRepo, sha1)); n != 5 {
		t.Errorf("%d commit statuses, want one per step (5)", n)
	}
	g2 := ghDeploymentOf(t, e.gh, fullRepo, d2.ID)
	if got := deploymentStates(g2); got != "queued inactive" ||
		g2.Statuses[1].Description != "Not deployed: superseded by 3333333" {
		t.Errorf("superseded deployment statuses = %+v", g2.Statuses)
	}
}

func TestEnvironmentNames(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{conversation.Environment("web"), "web"},
		{conversation.PreviewEnvironment("web", 42), "web-pr-42"},
	} {
		if tt.got != tt.want {
			t.Errorf("environment %q, want %q", tt.got, tt.want)
		}
	}
}
