package deploy

import (
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
)

// TestNeedsReconcileWithKeptContainers: a container kept for a rollback is
// no reason to reconcile inside its window, and one past it is; a removed
// app's kept container is always one.
func TestNeedsReconcileWithKeptContainers(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Minute), now.Add(-time.Second)
	removed := now.Add(-time.Hour)
	serving := store.OwnedContainer{ID: "a", AppID: 1, DeploymentID: 2}
	running := map[string]string{"a": "running", "b": "running"}
	cases := []struct {
		name  string
		app   store.App
		owned []store.OwnedContainer
		want  bool
	}{
		{"serving only", store.App{ID: 1, CurrentDeploymentID: 2}, []store.OwnedContainer{serving}, false},
		{"kept inside its window", store.App{ID: 1, CurrentDeploymentID: 2},
			[]store.OwnedContainer{serving, {ID: "b", AppID: 1, DeploymentID: 1, KeepUntil: &later}}, false},
		{"kept past its window", store.App{ID: 1, CurrentDeploymentID: 2},
			[]store.OwnedContainer{serving, {ID: "b", AppID: 1, DeploymentID: 1, KeepUntil: &earlier}}, true},
		{"not kept, not serving", store.App{ID: 1, CurrentDeploymentID: 2},
			[]store.OwnedContainer{serving, {ID: "b", AppID: 1, DeploymentID: 1}}, true},
		{"removed app's kept container", store.App{ID: 1, CurrentDeploymentID: 2, RemovedAt: &removed},
			[]store.OwnedContainer{{ID: "b", AppID: 1, DeploymentID: 1, KeepUntil: &later}}, true},
	}
	for _, c := range cases {
		if got := needsReconcile(c.app, c.owned, running, 0, now); got != c.want {
			t.Errorf("%s: needsReconcile = %v, want %v", c.name, got, c.want)
		}
	}
}
