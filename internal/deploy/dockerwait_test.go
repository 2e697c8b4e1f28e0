package deploy_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestDockerOutageSpendsOneAttempt: the engine's socket is cut for ~10 s
// while an update builds. The attempt that met the outage fails, saying
// Docker was unreachable; it waits for the engine to answer before it is
// restored and retried, so the outage spends that one attempt, not all of
// them, and the next attempt deploys.
func TestDockerOutageSpendsOneAttempt(t *testing.T) {
	var cut *deploytest.DockerCut
	h := newHarness(t, "dockerwait", func(o *options) {
		cut = deploytest.NewDockerCut(t, deploytest.Docker(t))
		o.docker = cut.Host
	})
	sha1 := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha1), store.StateSucceeded)

	sha2 := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v2", BuildStep: true,
		BuildSleep: 8 * time.Second, BuildPrint: []string{"building slowly"}}))
	h.logging(t, "web", sha2, "building slowly", "v2's build step running")
	cut.Cut()
	time.Sleep(10 * time.Second) // the outage's length
	cut.Restore()
	d := h.deployOf(t, "web", sha2)
	log := strings.Join(h.Log(t, d.ID), "\n")
	mustState(t, d, store.StateSucceeded)
	for _, want := range []string{"Attempt 1 of 3 failed", "Docker does not answer: waiting up to 1m for it", "Docker answers again after"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	var attempts int
	if err := h.Store.Pool().QueryRow(context.Background(), `SELECT max(attempt) FROM river_job
		WHERE kind = 'deploy' AND args->>'deployment_id' = $1`, strconv.FormatInt(d.ID, 10)).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Errorf("the deploy job ran %d attempts, want 2 (one spent on the outage):\n%s", attempts, log)
	}
}
