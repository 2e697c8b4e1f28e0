package deploy_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// processed waits until every recorded push delivery has been handled.
func (h *harness) processed(t *testing.T) {
	t.Helper()
	deploytest.Eventually(t, 60*time.Second, "the deliveries processed", func() (bool, error) {
		var n int
		err := h.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL`).Scan(&n)
		return err == nil && n == 0, err
	})
}

// appAbsent fails unless the repository has no live app called name.
func appAbsent(t *testing.T, h *harness, name string) {
	t.Helper()
	a, err := h.Store.AppByName(context.Background(), h.Repo.Owner, h.Repo.Name, name)
	if err == nil && a.RemovedAt == nil {
		t.Fatalf("app %s exists, tracking %s: a push from another branch created it", name, a.Branch)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
}

// TestPushFromAnotherBranchCannotTakeOverApps performs the takeover of
// issue 12 item 1: whoever can push to an unprotected branch declares an
// app of the default branch (not yet deployed, or removed) for their own
// branch. Nothing is created or re-created from that branch; the default
// branch's file decides.
func TestPushFromAnotherBranchCannotTakeOverApps(t *testing.T) {
	refused := &refusals{}
	h := newHarness(t, "takeover", func(o *options) { o.notifier = refused })
	// main declares api on main, but main has not been deployed yet (its
	// secrets may be set already).
	h.Repo.Commit(t, "main", map[string][]byte{".keystone.yml": ymlApp("api")}, "declare api")

	hostile := []byte("apps:\n  - {name: api, branch: tmp, port: 8080, health_check_path: /healthz}\n")
	evil := h.push(t, "tmp", deploytest.Files(t, hostile, gittest.Behaviour{Version: "evil"}))
	h.processed(t)
	appAbsent(t, h, "api")
	want := "api@" + evil[:7] + ": Not deployed: api is not declared for tmp on main; add it to main's .keystone.yml, or an admin runs keystone app allow"
	if got := refused.list(); !slices.Equal(got, []string{want}) {
		t.Fatalf("refusals %q, want %q", got, want)
	}

	// A removed app is not re-created from another branch either.
	q := store.NewQueries(h.Store.Pool())
	old, err := q.UpsertApp(context.Background(), store.AppSpec{InstallationID: deploytest.Installation,
		Owner: h.Repo.Owner, Repo: h.Repo.Name, Name: "gone", Branch: "main", CloneURL: h.Repo.CloneURL(), Config: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.RemoveApp(context.Background(), old.ID); err != nil {
		t.Fatal(err)
	}
	hostile = []byte("apps:\n  - {name: gone, branch: tmp, port: 8080, health_check_path: /healthz}\n")
	h.push(t, "tmp", map[string][]byte{".keystone.yml": hostile})
	h.processed(t)
	appAbsent(t, h, "gone")
	if n := len(refused.list()); n != 2 {
		t.Fatalf("%d refusals, want 2: %q", n, refused.list())
	}

	// An admin's allowance lets tmp have api; main's next push takes it back.
	if err := q.AllowApp(context.Background(), h.Repo.Owner, h.Repo.Name, "api", "tmp", "admin"); err != nil {
		t.Fatal(err)
	}
	hostile = []byte("apps:\n  - {name: api, branch: tmp, port: 8080, health_check_path: /healthz, health_check_timeout: 4s}\n")
	onTmp := h.push(t, "tmp", map[string][]byte{".keystone.yml": hostile})
	mustState(t, h.deployOf(t, "api", onTmp), store.StateSucceeded)
	if a := h.App(t, "api"); a.Branch != "tmp" {
		t.Fatalf("allowed api tracks %q, want tmp", a.Branch)
	}
	onMain := h.push(t, "main", deploytest.Files(t, ymlApp("api"), gittest.Behaviour{Version: "main"}))
	mustState(t, h.deployOf(t, "api", onMain), store.StateSucceeded)
	if a := h.App(t, "api"); a.Branch != "main" {
		t.Fatalf("after main's push api tracks %q, want main", a.Branch)
	}
}

// refusals is a deploy.Notifier that keeps the refusals it hears of.
type refusals struct {
	mu  sync.Mutex
	got []string // app: description
}

func (r *refusals) DeploymentChanged(context.Context, pgx.Tx, store.App, store.Deployment) error {
	return nil
}

func (r *refusals) PushRefused(_ context.Context, _ pgx.Tx, app store.App, sha, description string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, app.Name+"@"+sha[:7]+": "+description)
	return nil
}

func (r *refusals) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestReplayedPushIsNotDeployedAgain performs the replay of issue 12 item 4
// for pushes: the signed body of a push already deployed, re-sent under a
// new delivery id, makes no new deployment.
func TestReplayedPushIsNotDeployedAgain(t *testing.T) {
	h := newHarness(t, "replay")
	sha := h.Repo.Commit(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}), "v1")
	body := h.Repo.PushEvent("main", sha, "alice")
	h.deliver(t, body)
	mustState(t, h.deployOf(t, "web", sha), store.StateSucceeded)
	h.deliver(t, body) // a new random GUID, the same signed body
	h.processed(t)
	if n := len(h.Deployments(t, "web")); n != 1 {
		t.Fatalf("%d deployments after the replay, want 1", n)
	}
}
