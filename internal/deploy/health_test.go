package deploy_test

import (
	"context"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestHealthProbesStartQuickly: an app that listens a moment after its
// start is found healthy then, not a whole health interval later. The first
// probe comes before the app listens; the next ones follow within
// milliseconds, and only later slow down to the interval.
func TestHealthProbesStartQuickly(t *testing.T) {
	const interval = time.Minute // longer than the health check's timeout
	h := newHarness(t, "quickprobe", func(o *options) { o.cfg.HealthInterval = interval })
	yml := []byte("apps:\n  - name: web\n    branch: main\n    port: 8080\n    health_check_path: /healthz\n")
	sha := h.push(t, "main", deploytest.Files(t, yml, gittest.Behaviour{Version: "v1", StartDelay: 300 * time.Millisecond}))
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateSucceeded)
	steps, err := h.Store.StepsOf(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Name != deploy.StepHealth {
			continue
		}
		if s.FinishedAt == nil {
			t.Fatal("the health step never finished")
		}
		if took := s.FinishedAt.Sub(s.StartedAt); took >= interval/2 {
			t.Errorf("the health step took %s: a probe waited the whole %s interval", took, interval)
		}
		return
	}
	t.Errorf("no health step in %v", h.steps(t, d.ID))
}
