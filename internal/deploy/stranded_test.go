package deploy

import (
	"fmt"
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
	replaced, lastAttempt := mk(true), mk(true)
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

	// Two jobs left running by a process that died: one with attempts left
	// is replaced, one in its last attempt is not (River has no API to make
	// a job running without working it: the rows are set as a dead process
	// leaves them).
	maxAttempts := newest[lastAttempt.ID].MaxAttempts
	for d, attempt := range map[int64]int{replaced.ID: 1, lastAttempt.ID: maxAttempts} {
		if _, err := st.Pool().Exec(ctx, `UPDATE river_job SET state = 'running', attempt = $2,
			attempted_by = ARRAY['keystone_dead_1'], attempted_at = now() - interval '1 minute' WHERE id = $1`,
			newest[d].ID, attempt); err != nil {
			t.Fatal(err)
		}
	}
	rescuer := &queue.OrphanRescuer{Store: st, Jobs: jobs, ProcessID: "keystone_live_1", Logger: e.logger}
	if rescued, err := rescuer.Rescue(ctx); err != nil || len(rescued) != 2 {
		t.Fatalf("rescued %+v (%v), want the two jobs of the dead process", rescued, err)
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
	if _, ok := got[replaced.ID]; ok {
		t.Error("a deployment whose job was replaced after its process died is reported stranded")
	}
	if s, ok := got[lastAttempt.ID]; !ok {
		t.Error("a deployment whose last attempt died with its process is not reported stranded (River finalizes its job only after RescueStuckJobsAfter)")
	} else if want := fmt.Sprintf("Keystone stopped during it %d times", maxAttempts); strandedReason(s) != want {
		t.Errorf("its reason %q, want %q", strandedReason(s), want)
	}
	if len(got) != 3 {
		t.Errorf("%d stranded deployments, want 3: %+v", len(got), got)
	}
}
