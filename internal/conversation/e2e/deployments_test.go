package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
)

func deploymentStates(d githubtest.Deployment) string {
	var s []string
	for _, st := range d.Statuses {
		s = append(s, st.State)
	}
	return strings.Join(s, " ")
}

// keystoneDeploymentID reads Keystone's marker from a GitHub deployment's
// payload (0 when it has none).
func keystoneDeploymentID(d githubtest.Deployment) int64 {
	var m struct {
		ID int64 `json:"keystone_deployment_id"`
	}
	_ = json.Unmarshal(d.Payload, &m)
	return m.ID
}

// TestGitHubDeploymentsThroughOutageAndRestart runs the real binary: v1
// deploys and is a GitHub Deployment in environment web. Then GitHub
// creates v2's deployment but answers 500, and every deployments call fails
// while v2 deploys; Keystone is killed during that outage and started again
// after it. In the end each Keystone deployment is exactly one GitHub
// Deployment of its SHA (the lost creation was found, not repeated), with
// its statuses once each and in order, and v1's is inactive.
func TestGitHubDeploymentsThroughOutageAndRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.start(t)
	const path = "/repos/" + e2eRepo + "/deployments"

	v1 := w.push(t, gittest.Behaviour{Version: "1"})
	if st := w.finalStatus(t, v1, 5*time.Minute); st.State != "success" {
		t.Fatalf("final status of v1 = %+v", st)
	}
	await(t, time.Minute, "v1's GitHub deployment to succeed", func() bool {
		ds := w.GitHub.Deployments(e2eRepo)
		return len(ds) == 1 && deploymentStates(ds[0]) == "queued in_progress success"
	})

	w.GitHub.Inject(githubtest.Fault{Method: "POST", PathPrefix: path, Status: 500, Apply: true, Times: 1, RetryAfter: time.Second})
	endOutage := w.GitHub.Inject(githubtest.Fault{PathPrefix: path, Status: 500, RetryAfter: time.Second})
	v2 := w.push(t, gittest.Behaviour{Version: "2"})
	if st := w.finalStatus(t, v2, 5*time.Minute); st.State != "success" {
		t.Fatalf("final status of v2 = %+v: the outage of deployments held up the deploy", st)
	}
	await(t, time.Minute, "retries to meet the outage", func() bool {
		n := 0
		for _, r := range w.GitHub.RequestsTo("", path) {
			if r.Status == http.StatusInternalServerError {
				n++
			}
		}
		return n >= 3
	})
	if ds := w.GitHub.Deployments(e2eRepo); len(ds) != 2 || len(ds[1].Statuses) != 0 {
		t.Fatalf("during the outage GitHub has %d deployments, want v2's created without statuses", len(ds))
	}
	w.ks.Kill()
	endOutage()
	w.start(t)

	await(t, time.Minute, "v2's deployment to succeed and v1's to turn inactive", func() bool {
		ds := w.GitHub.Deployments(e2eRepo)
		return len(ds) == 2 && deploymentStates(ds[0]) == "queued in_progress success inactive" &&
			deploymentStates(ds[1]) == "queued in_progress success"
	})
	outboxtest.WaitIdle(t, w.Store, 30*time.Second)

	ours := w.Deployments(t, "web")
	ghs := w.GitHub.Deployments(e2eRepo)
	if len(ghs) != len(ours) {
		t.Fatalf("%d GitHub deployments for %d Keystone deployments", len(ghs), len(ours))
	}
	port := w.App(t, "web").HostPort
	for i, d := range ours {
		g := ghs[i]
		if keystoneDeploymentID(g) != d.ID || g.SHA != d.SHA || g.Environment != "web" || !g.ProductionEnvironment {
			t.Errorf("GitHub deployment %d = %+v, want Keystone deployment %d of %s in production environment web", i, g, d.ID, d.SHA[:7])
		}
		for _, st := range g.Statuses {
			if st.LogURL != fmt.Sprintf("http://keystone.test:8080/deployments/%d", d.ID) {
				t.Errorf("deployment %d status %s log_url %q", d.ID, st.State, st.LogURL)
			}
			if st.State == "success" && st.EnvironmentURL != fmt.Sprintf("http://127.0.0.1:%d/", port) {
				t.Errorf("deployment %d success environment_url %q, want the app's URL", d.ID, st.EnvironmentURL)
			}
		}
	}
	looked := false
	for _, r := range w.GitHub.RequestsTo("GET", path) {
		looked = looked || (r.Path == path && r.Status == http.StatusOK && r.Query.Get("sha") == v2)
	}
	if !looked {
		t.Errorf("the restarted Keystone did not look for v2's deployment: the test proves nothing")
	}
	if !deploytest.Serves(port, "2") {
		t.Errorf("v2 does not serve")
	}
}
