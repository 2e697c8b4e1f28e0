package outbox_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// addDeployment stores an app web of acme/web (once) and a deployment of
// sha, as the deploy engine would.
func (e *env) addDeployment(t *testing.T, sha string) store.Deployment {
	t.Helper()
	ctx := t.Context()
	app, err := e.st.AppByName(ctx, "acme", "web", "web")
	if err != nil {
		app, err = storetest.AddApp(ctx, e.st.Pool(), store.App{InstallationID: inst, Owner: "acme", Repo: "web", Name: "web"})
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := storetest.AddDeployment(ctx, e.st.Pool(), store.Deployment{AppID: app.ID, SHA: sha})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// enqueueLife queues deployment d's GitHub Deployment and the statuses of
// its life, each in its own transaction as the engine's changes are.
func (e *env) enqueueLife(t *testing.T, d store.Deployment, states ...string) {
	t.Helper()
	e.tx(t, func(q *store.Queries) error {
		_, err := outbox.EnqueueDeployment(t.Context(), q, target, outbox.Deployment{
			DeploymentID: d.ID, SHA: d.SHA, Environment: "web", Production: true, Description: "Keystone update"})
		return err
	})
	for _, s := range states {
		e.tx(t, func(q *store.Queries) error {
			_, err := outbox.EnqueueDeploymentStatus(t.Context(), q, outbox.DeploymentStatus{DeploymentID: d.ID, State: s,
				Description: "now " + s, LogURL: "https://keystone.example/deployments/7"})
			return err
		})
	}
}

func statesOf(d githubtest.Deployment) string {
	var s []string
	for _, st := range d.Statuses {
		s = append(s, st.State)
	}
	return strings.Join(s, " ")
}

// TestDeploymentCreatedOnceThroughFailures: whatever happens to the
// creating POST (its answer lost after GitHub acted, a 500 after GitHub
// acted, an outage before it acted) and to a status post, the deployment
// exists once on GitHub, with its statuses once each and in order, and
// Keystone knows its id.
func TestDeploymentCreatedOnceThroughFailures(t *testing.T) {
	const create, statuses = "/repos/acme/web/deployments", "/repos/acme/web/deployments/"
	tests := []struct {
		name string
		f    githubtest.Fault
		// lookedUp: the fault leaves the outcome unknown, so Keystone must
		// look for what it may have created.
		lookedUp bool
	}{
		{"answer lost after GitHub acted", githubtest.Fault{Method: "POST", PathPrefix: create, Stall: 3 * time.Second, Times: 1}, true},
		{"500 after GitHub acted", githubtest.Fault{Method: "POST", PathPrefix: create, Status: 500, Apply: true, Times: 1}, true},
		{"outage before GitHub acted", githubtest.Fault{PathPrefix: create, Status: 502, Times: 2}, true},
		{"status answer lost", githubtest.Fault{Method: "POST", PathPrefix: statuses, Status: 500, Apply: true, Times: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *github.Config) { c.RequestTimeout = 700 * time.Millisecond })
			// Keystone's own pending commit status: a creation that left
			// required_contexts to GitHub's default would be refused.
			if err := e.app.CreateStatus(t.Context(), inst, "acme", "web", shaA, github.Status{State: "pending", Context: "keystone/web"}); err != nil {
				t.Fatal(err)
			}
			d := e.addDeployment(t, shaA)
			e.gh.Inject(tt.f)
			e.enqueueLife(t, d, "queued", "in_progress", "success")
			outboxtest.Start(t, e.st, e.app, outboxtest.Config())
			outboxtest.WaitIdle(t, e.st, 30*time.Second)

			got := e.gh.Deployments(fullRepo)
			if len(got) != 1 {
				t.Fatalf("%d GitHub deployments, want 1", len(got))
			}
			if s := statesOf(got[0]); s != "queued in_progress success" {
				t.Errorf("statuses = %q, want queued in_progress success", s)
			}
			if got[0].SHA != shaA || got[0].Environment != "web" || !got[0].ProductionEnvironment {
				t.Errorf("deployment = %+v", got[0])
			}
			g, err := e.st.GitHubDeployment(t.Context(), d.ID)
			if err != nil || g.GitHubID != got[0].ID {
				t.Errorf("recorded GitHub id %d (%v), want %d", g.GitHubID, err, got[0].ID)
			}
			looked, lookedStatus := false, false
			for _, r := range e.gh.RequestsTo("GET", create) {
				looked = looked || r.Path == create
				lookedStatus = lookedStatus || strings.HasSuffix(r.Path, "/statuses")
			}
			if looked != tt.lookedUp || lookedStatus == tt.lookedUp {
				t.Errorf("looked up deployments: %t, statuses: %t; want %t, %t", looked, lookedStatus, tt.lookedUp, !tt.lookedUp)
			}
			if tt.f.Status != 0 && countStatus(e.gh.Requests(), tt.f.Status) == 0 {
				t.Errorf("the fault never hit: the test proves nothing")
			}
			if got := outboxtest.States(t, e.st); strings.Join(got, " ") != "sent sent sent sent" {
				t.Errorf("outbox states = %v", got)
			}
		})
	}
}

// TestResumesAfterCrashMidCreate: a process died after GitHub created the
// deployment and before Keystone recorded it. The next process finds it by
// its marker (ignoring a look-alike of another Keystone deployment) and
// posts the statuses on it.
func TestResumesAfterCrashMidCreate(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	d := e.addDeployment(t, shaA)
	e.enqueueLife(t, d, "queued")
	if _, err := e.st.Pool().Exec(ctx, `UPDATE github_outbox SET attempts = 1 WHERE kind = 'deployment'`); err != nil {
		t.Fatal(err)
	}
	instance, err := e.st.InstanceID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := e.app.CreateDeployment(ctx, inst, "acme", "web", github.NewDeployment{SHA: shaA, Environment: "web",
		ProductionEnvironment: true, Payload: map[string]any{"keystone_deployment_id": d.ID, "keystone_instance": instance}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.app.CreateDeployment(ctx, inst, "acme", "web", github.NewDeployment{SHA: shaA, Environment: "web",
		ProductionEnvironment: true, Payload: map[string]any{"keystone_deployment_id": d.ID + 1, "keystone_instance": instance}})
	if err != nil {
		t.Fatal(err)
	}
	posts := len(e.gh.RequestsTo("POST", "/repos/acme/web/deployments"))

	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if n := len(e.gh.RequestsTo("POST", "/repos/acme/web/deployments")) - posts; n != 1 {
		t.Errorf("%d posts after the restart, want only the queued status", n)
	}
	for _, g := range e.gh.Deployments(fullRepo) {
		want := map[int64]string{mine: "queued", other: ""}[g.ID]
		if s := statesOf(g); s != want {
			t.Errorf("deployment %d statuses %q, want %q", g.ID, s, want)
		}
	}
}
