package store_test

import (
	"testing"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestActivateGitHubDeploymentStaysInItsEnvironment: a success replaces the
// active deployment of its own repository and environment only. An app of
// another repository that names itself like ours (a hostile .keystone.yml
// can pick any name) cannot turn our deployment inactive, nor can our
// preview environment; the owner's case does not matter, as on GitHub.
func TestActivateGitHubDeploymentStaysInItsEnvironment(t *testing.T) {
	q, tx := storetest.Tx(t)
	ctx := t.Context()
	ours := createApp(t, q, "acme", "web", "web")
	theirs := createApp(t, q, "mallory", "web", "web")
	add := func(app store.App, owner, env string) int64 {
		t.Helper()
		d, err := storetest.AddDeployment(ctx, tx, store.Deployment{AppID: app.ID})
		if err != nil {
			t.Fatal(err)
		}
		if _, added, err := q.AddGitHubDeployment(ctx, store.GitHubDeployment{DeploymentID: d.ID, InstallationID: 1,
			Owner: owner, Repo: "web", Environment: env}); err != nil || !added {
			t.Fatalf("add GitHub deployment: added %t, %v", added, err)
		}
		return d.ID
	}
	activate := func(id int64) []int64 {
		t.Helper()
		replaced, err := q.ActivateGitHubDeployment(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, r := range replaced {
			ids = append(ids, r.DeploymentID)
		}
		return ids
	}
	first := add(ours, "acme", "web")
	if got := activate(first); len(got) != 0 {
		t.Errorf("the first success replaced %v", got)
	}
	if got := activate(add(theirs, "mallory", "web")); len(got) != 0 {
		t.Errorf("another repository's success replaced %v", got)
	}
	if got := activate(add(ours, "acme", "web-pr-3")); len(got) != 0 {
		t.Errorf("a preview's success replaced %v", got)
	}
	second := add(ours, "ACME", "web")
	if got := activate(second); len(got) != 1 || got[0] != first {
		t.Errorf("the next success replaced %v, want [%d]", got, first)
	}
	if got := activate(add(ours, "acme", "web")); len(got) != 1 || got[0] != second {
		t.Errorf("the third success replaced %v, want only [%d]", got, second)
	}
	if _, added, err := q.AddGitHubDeployment(ctx, store.GitHubDeployment{DeploymentID: first, InstallationID: 1,
		Owner: "acme", Repo: "web", Environment: "other"}); err != nil || added {
		t.Errorf("a second GitHub deployment of one deployment: added %t, %v", added, err)
	}
	if g, err := q.GitHubDeployment(ctx, first); err != nil || g.Environment != "web" || g.Active {
		t.Errorf("first = %+v, %v; want environment web, inactive", g, err)
	}
}
