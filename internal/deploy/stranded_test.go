package deploy

import (
	"io"
	"log/slog"
	"testing"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestStrandedDeploymentsHaveNoLiveJob: through River's API only, a
// deployment whose job waits is not stranded; one whose job was cancelled,
// or that has no job at all, is.
func TestStrandedDeploymentsHaveNoLiveJob(t *testing.T) {
	ctx := t.Context()
	st := storetest.New(t)
	jobs, err := queue.NewClient(st.Pool(), nil, queue.Config{DeployWorkers: 1}) // inserts only: no worker runs them
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{store: st, jobs: jobs, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	app, err := storetest.AddApp(ctx, st.Pool(), store.App{Owner: "octo", Repo: "stranded", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(withJob bool) store.Deployment {
		d, err := storetest.AddDeployment(ctx, st.Pool(), store.Deployment{AppID: app.ID, State: store.StateRunning})
		if err != nil {
			t.Fatal(err)
		}
		if withJob {
			if _, err := jobs.Insert(ctx, queue.DeployArgs{DeploymentID: d.ID, AppID: app.ID}, nil); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	live, cancelled, none := mk(true), mk(true), mk(false)
	finished := mk(true)
	if err := storetest.FinishDeployment(ctx, st.Pool(), finished.ID, store.StateSucceeded, "done"); err != nil {
		t.Fatal(err)
	}
	newest, err := e.newestDeployJobs(ctx)
	if err != nil || newest[cancelled.ID] == nil {
		t.Fatalf("jobs by deployment %v, %v", newest, err)
	}
	if _, err := jobs.JobCancel(ctx, newest[cancelled.ID].ID); err != nil {
		t.Fatal(err)
	}

	stranded, err := e.strandedDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]store.StrandedDeployment{}
	for _, s := range stranded {
		got[s.ID] = s
	}
	if _, ok := got[live.ID]; ok {
		t.Error("a deployment whose job waits is reported stranded")
	}
	if _, ok := got[finished.ID]; ok {
		t.Error("a finished deployment is reported stranded")
	}
	if _, ok := got[cancelled.ID]; !ok {
		t.Error("a deployment whose job was cancelled is not reported stranded")
	}
	if _, ok := got[none.ID]; !ok {
		t.Error("a deployment without a job is not reported stranded")
	}
	if len(got) != 2 {
		t.Errorf("%d stranded deployments, want 2: %+v", len(got), got)
	}
}
