package deploy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestRequestsWhileADeploymentRuns: while a deployment of the app is queued
// or running, a redeploy or deploy is refused (busy, naming it and its
// step) whatever the button showed; a rollback is queued and supersedes the
// queued deployment, then runs.
func TestRequestsWhileADeploymentRuns(t *testing.T) {
	h := newHarness(t, "busy")
	v1, _ := deployV1(t, h)
	app := h.App(t, "web")
	ctx := context.Background()
	rq := h.engine.Requester(h.jobs)

	running, err := storetest.AddDeployment(ctx, h.Store.Pool(), store.Deployment{AppID: app.ID, State: store.StateRunning, Step: "build"})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{store.KindRedeploy, store.KindDeploy} {
		_, err := rq.Request(ctx, deploy.Request{AppID: app.ID, Kind: kind, Actor: "bob", Trigger: store.TriggerPage})
		var re *deploy.RequestError
		if !errors.As(err, &re) || !re.Busy || !strings.Contains(re.Reason, "running, at step build") {
			t.Fatalf("%s while #%d runs: %v, want a busy refusal naming the step", kind, running.ID, err)
		}
	}
	if err := storetest.FinishDeployment(ctx, h.Store.Pool(), running.ID, store.StateFailed, "test"); err != nil {
		t.Fatal(err)
	}

	queued, err := storetest.AddDeployment(ctx, h.Store.Pool(), store.Deployment{AppID: app.ID, Kind: store.KindUpdate})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rq.Request(ctx, deploy.Request{AppID: app.ID, Kind: store.KindRedeploy, Actor: "bob", Trigger: store.TriggerPage})
	if err == nil || !strings.Contains(err.Error(), "is queued") {
		t.Fatalf("redeploy while #%d is queued: %v", queued.ID, err)
	}
	rb := h.request(t, deploy.Request{AppID: app.ID, Kind: store.KindRollback, TargetDeploymentID: v1.ID, Actor: "bob", Trigger: store.TriggerPage})
	mustState(t, rb, store.StateSucceeded)
	q, err := h.Store.Deployment(ctx, queued.ID)
	if err != nil {
		t.Fatal(err)
	}
	if q.State != store.StateSuperseded || !strings.Contains(q.Description, "rollback") {
		t.Fatalf("queued deployment after the rollback: %s %q, want superseded by it", q.State, q.Description)
	}
}
