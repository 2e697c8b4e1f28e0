package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func TestAppsOverview(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, db := t.Context(), st.Pool()
	web, err := storetest.AddApp(ctx, db, store.App{Owner: "b-org", Repo: "shop", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	api, err := storetest.AddApp(ctx, db, store.App{Owner: "a-org", Repo: "api", Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := storetest.AddApp(ctx, db, store.App{Owner: "a-org", Repo: "old", Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE apps SET removed_at = now() WHERE id = $1`, gone.ID); err != nil {
		t.Fatal(err)
	}
	serving, err := storetest.AddDeployment(ctx, db, store.Deployment{AppID: web.ID, State: store.StateSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	running, err := storetest.AddDeployment(ctx, db, store.Deployment{AppID: web.ID, State: store.StateRunning})
	if err != nil {
		t.Fatal(err)
	}

	got, err := st.AppsOverview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].App.ID != api.ID || got[1].App.ID != web.ID {
		t.Fatalf("overview %+v: want api then web, not the removed app", got)
	}
	if got[0].Current != nil || got[0].Latest != nil {
		t.Errorf("api has no deployment, got current %+v latest %+v", got[0].Current, got[0].Latest)
	}
	if got[1].Current == nil || got[1].Current.ID != serving.ID || got[1].Latest == nil || got[1].Latest.ID != running.ID {
		t.Errorf("web: current %+v latest %+v, want %d and %d", got[1].Current, got[1].Latest, serving.ID, running.ID)
	}
}

func TestAppHistoryAndRollbackCandidates(t *testing.T) {
	q, tx := storetest.Tx(t)
	ctx := t.Context()
	a, err := storetest.AddApp(ctx, tx, store.App{Owner: "hist", Repo: "r", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 7 {
		state := store.StateSucceeded
		if i%3 == 2 {
			state = store.StateFailed
		}
		d, err := storetest.AddDeployment(ctx, tx, store.Deployment{AppID: a.ID, State: state})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	page, err := q.AppHistory(ctx, a.ID, 0, 3)
	if err != nil || len(page) != 3 || page[0].ID != ids[6] || page[2].ID != ids[4] {
		t.Fatalf("first page %v, %v", deploymentIDs(page), err)
	}
	page, err = q.AppHistory(ctx, a.ID, ids[4], 3)
	if err != nil || len(page) != 3 || page[0].ID != ids[3] || page[2].ID != ids[1] {
		t.Fatalf("page before %d: %v, %v", ids[4], deploymentIDs(page), err)
	}
	ok, err := q.RollbackCandidates(ctx, a.ID, 10)
	want := []int64{ids[6], ids[4], ids[3], ids[1], ids[0]}
	if err != nil || !slices.Equal(deploymentIDs(ok), want) {
		t.Fatalf("RollbackCandidates = %v, %v; want the successes newest first %v", deploymentIDs(ok), err, want)
	}
}

func TestStepsOf(t *testing.T) {
	q, tx := storetest.Tx(t)
	ctx := t.Context()
	a, _ := storetest.AddApp(ctx, tx, store.App{Owner: "steps", Repo: "r", Name: "web"})
	d, err := storetest.AddDeployment(ctx, tx, store.Deployment{AppID: a.ID, State: store.StateRunning})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	end := start.Add(2 * time.Second)
	for _, s := range []store.DeploymentStep{
		{Position: 2, Name: "build", StartedAt: end},
		{Position: 1, Name: "fetch", StartedAt: start, FinishedAt: &end},
	} {
		if err := storetest.AddStep(ctx, tx, d.ID, s); err != nil {
			t.Fatal(err)
		}
	}
	steps, err := q.StepsOf(ctx, d.ID)
	if err != nil || len(steps) != 2 || steps[0].Name != "fetch" || steps[0].FinishedAt == nil ||
		!steps[0].FinishedAt.Equal(end) || steps[1].FinishedAt != nil {
		t.Fatalf("StepsOf = %+v, %v", steps, err)
	}
}

func TestAuditPage(t *testing.T) {
	q, _ := storetest.Tx(t)
	ctx := t.Context()
	for i := range 5 {
		if err := q.AppendAudit(ctx, store.AuditEvent{Actor: "pager", Action: store.AuditCommandAccepted, Target: "t",
			Details: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := q.AuditPage(ctx, 0, 2)
	if err != nil || len(first) != 2 || first[0].Details["i"] != float64(4) || first[0].ID <= first[1].ID {
		t.Fatalf("first audit page %+v, %v", first, err)
	}
	next, err := q.AuditPage(ctx, first[1].ID, 2)
	if err != nil || len(next) != 2 || next[0].Details["i"] != float64(2) {
		t.Fatalf("next audit page %+v, %v", next, err)
	}
}

func deploymentIDs(ds []store.Deployment) []int64 {
	var out []int64
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// TestSeedHistory checks the benchmark's fixture: apps with their history,
// each served by its newest success.
func TestSeedHistory(t *testing.T) {
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := storetest.SeedHistory(t.Context(), st.Pool(), 3, 20); err != nil {
		t.Fatal(err)
	}
	apps, err := st.AppsOverview(t.Context())
	if err != nil || len(apps) != 3 {
		t.Fatalf("overview: %d apps, %v", len(apps), err)
	}
	for _, a := range apps {
		history, err := st.AppHistory(t.Context(), a.App.ID, 0, 100)
		if err != nil || len(history) != 20 {
			t.Fatalf("%s: %d deployments, %v", a.App.Key(), len(history), err)
		}
		if a.Latest.ID != history[0].ID || a.Latest.State != store.StateFailed || a.Current.ID != history[1].ID {
			t.Fatalf("%s: latest %d (%s), current %d; want the failed #20 and the success before it", a.App.Key(), a.Latest.ID, a.Latest.State, a.Current.ID)
		}
	}
}
