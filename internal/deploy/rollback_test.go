package deploy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/store"
)

func (h *harness) request(t *testing.T, req deploy.Request) store.Deployment {
	t.Helper()
	d, err := h.engine.Requester(h.jobs).Request(context.Background(), req)
	if err != nil {
		t.Fatalf("request %+v: %v", req, err)
	}
	d = h.WaitFinished(t, d.ID, 60e9)
	if d.State == store.StateSucceeded {
		h.cleanedUp(t, d.ID)
	}
	return d
}

// TestRollbackReusesTheKeptImage: a rollback runs the target's kept image
// with no fetch and no build, keeps the port, and is audited; a second
// rollback goes further back rather than forward again.
func TestRollbackReusesTheKeptImage(t *testing.T) {
	h := newHarness(t, "rollback")
	v1, port := deployV1(t, h)
	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	v2 := h.deployOf(t, "web", sha2)
	mustState(t, v2, store.StateSucceeded)
	sha3 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v3"}`)})
	v3 := h.deployOf(t, "web", sha3)
	mustState(t, v3, store.StateSucceeded)
	app := h.App(t, "web")
	fetches, images := h.Git.Fetches(h.Repo.FullName), len(h.Images(t))

	rb := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, Actor: "bob", Trigger: store.TriggerComment})
	mustState(t, rb, store.StateSucceeded)
	if rb.TargetDeploymentID != v2.ID || rb.SHA != v2.SHA || rb.ImageID != v2.ImageID || rb.Actor != "bob" || rb.Trigger != "comment" {
		t.Fatalf("rollback: target %d sha %s image %s (v2: %d %s %s)", rb.TargetDeploymentID, rb.SHA[:7], rb.ImageID, v2.ID, v2.SHA[:7], v2.ImageID)
	}
	if steps := h.steps(t, rb.ID); slices.Contains(steps, "fetch") || slices.Contains(steps, "build") {
		t.Errorf("the rollback fetched or built: steps %v", steps)
	}
	if h.Git.Fetches(h.Repo.FullName) != fetches || len(h.Images(t)) != images {
		t.Errorf("fetches %d→%d, images %d→%d: a rollback must not fetch or build",
			fetches, h.Git.Fetches(h.Repo.FullName), images, len(h.Images(t)))
	}
	if !deploytest.Serves(port, "v2") || h.App(t, "web").HostPort != port {
		t.Fatal("the rollback does not serve v2 on the app's port")
	}
	log := strings.Join(h.Log(t, rb.ID), "\n")
	if !strings.Contains(log, "Using the kept image") {
		t.Errorf("log:\n%s", log)
	}
	var audited int
	if err := h.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM audit_events
		WHERE action = $1 AND actor = 'bob' AND (details->>'deployment_id')::bigint = $2`,
		store.AuditDeployRequested, rb.ID).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("rollback audited %d times (%v)", audited, err)
	}

	again := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, Actor: "bob", Trigger: store.TriggerPage})
	mustState(t, again, store.StateSucceeded)
	if again.TargetDeploymentID != v1.ID || !deploytest.Serves(port, "v1") {
		t.Fatalf("second rollback went to #%d, want v1's #%d", again.TargetDeploymentID, v1.ID)
	}
	to := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, SHA: sha3[:8], Actor: "bob", Trigger: store.TriggerComment})
	if to.TargetDeploymentID != v3.ID || !deploytest.Serves(port, "v3") {
		t.Fatalf("rollback to %s went to #%d", sha3[:8], to.TargetDeploymentID)
	}
	byID := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, TargetDeploymentID: v1.ID, Actor: "bob", Trigger: store.TriggerComment})
	if byID.TargetDeploymentID != v1.ID || !deploytest.Serves(port, "v1") {
		t.Fatalf("rollback to #%d went to #%d", v1.ID, byID.TargetDeploymentID)
	}
	redeploy := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRedeploy, Actor: "bob", Trigger: store.TriggerPage})
	if redeploy.State != store.StateSucceeded || redeploy.SHA != v1.SHA || redeploy.ImageID != v1.ImageID {
		t.Fatalf("redeploy: %s %s image %s", redeploy.State, redeploy.SHA[:7], redeploy.ImageID)
	}
}

// TestRollbackRebuildsWhenTheImageIsGone: with its image removed, the
// target is fetched (from the cache) and built again.
func TestRollbackRebuildsWhenTheImageIsGone(t *testing.T) {
	h := newHarness(t, "rebuild")
	v1, port := deployV1(t, h)
	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	mustState(t, h.deployOf(t, "web", sha2), store.StateSucceeded)
	if err := removeImage(h, v1.ImageID); err != nil {
		t.Fatal(err)
	}
	rb := h.request(t, deploy.Request{AppID: v1.AppID, Kind: store.KindRollback, Actor: "bob", Trigger: store.TriggerComment})
	mustState(t, rb, store.StateSucceeded)
	if steps := h.steps(t, rb.ID); !slices.Contains(steps, "build") || rb.ImageID == v1.ImageID {
		t.Fatalf("steps %v, image %s: the gone image should have been rebuilt", steps, rb.ImageID)
	}
	if !deploytest.Serves(port, "v1") {
		t.Fatal("the rebuilt v1 does not serve")
	}
}

// TestRequestsRefused: requests that cannot be honoured are refused with a
// reason for the person, and record nothing; a commit reachable only from
// a pull request's ref is never deployed.
func TestRequestsRefused(t *testing.T) {
	h := newHarness(t, "refusals")
	v1, _ := deployV1(t, h)
	app := h.App(t, "web")
	fork := h.Repo.CommitToRef(t, "main", "refs/pull/7/head", map[string][]byte{"behaviour.json": []byte(`{"version": "evil"}`)}, "from a fork")
	dev := h.Repo.Commit(t, "dev", map[string][]byte{"behaviour.json": []byte(`{"version": "dev"}`)}, "dev work")
	cases := []struct {
		name string
		req  deploy.Request
		want string
	}{
		{"no earlier deployment", deploy.Request{Kind: store.KindRollback}, "no earlier successful deployment"},
		{"unknown sha", deploy.Request{Kind: store.KindRollback, SHA: "deadbeef"}, "no successful deployment of web at deadbeef"},
		{"other app's deployment", deploy.Request{Kind: store.KindRollback, TargetDeploymentID: v1.ID + 1000}, "is not a successful deployment"},
		{"not a sha", deploy.Request{Kind: store.KindDeploy, SHA: "main; rm -rf"}, "is not a commit SHA"},
		{"fork's commit", deploy.Request{Kind: store.KindDeploy, SHA: fork}, "branch of octo/refusals"},
		{"unknown kind", deploy.Request{Kind: "destroy"}, "unknown kind"},
	}
	before := len(h.Deployments(t, "web"))
	for _, c := range cases {
		c.req.AppID, c.req.Actor, c.req.Trigger = app.ID, "mallory", store.TriggerComment
		_, err := h.engine.Requester(h.jobs).Request(context.Background(), c.req)
		var re *deploy.RequestError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want a RequestError containing %q", c.name, err, c.want)
		}
	}
	if n := len(h.Deployments(t, "web")); n != before {
		t.Fatalf("refused requests recorded %d deployments", n-before)
	}
	// A commit on another branch is allowed by `/keystone deploy web SHA`.
	d := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindDeploy, SHA: dev[:10], Actor: "bob", Trigger: store.TriggerComment})
	mustState(t, d, store.StateSucceeded)
	if d.SHA != dev || d.Kind != store.KindUpdate || d.Ref != "refs/heads/dev" || !deploytest.Serves(app.HostPort, "dev") {
		t.Fatalf("deploy of dev: %s %s %s", d.SHA, d.Kind, d.Ref)
	}
	head := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindDeploy, Actor: "bob", Trigger: store.TriggerPage})
	if head.SHA != v1.SHA || !deploytest.Serves(app.HostPort, "v1") {
		t.Fatalf("deploy of main's head went to %s, want %s", head.SHA[:7], v1.SHA[:7])
	}
}

func removeImage(h *harness, id string) error {
	_, err := h.Docker.ImageRemove(context.Background(), id, image.RemoveOptions{Force: true})
	return err
}
