package e2e_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestSIGKILLDuringEachStep kills Keystone (SIGKILL: no shutdown code runs)
// while an update is fetching, building, checking health or switching, then
// starts it again. Every time the update ends in a defined state (retried
// from a safe point, or failed), the previous version serves until then,
// nothing is left pending and no container is orphaned.
func TestSIGKILLDuringEachStep(t *testing.T) {
	yml := []byte("apps:\n  - name: web\n    branch: main\n    port: 8080\n    health_check_path: /healthz\n    health_check_timeout: 20s\n")
	cases := []struct {
		name string
		v1   gittest.Behaviour
		v2   gittest.Behaviour
		// prepare runs before the push; it returns what to do after the
		// restart. kill waits for the moment to kill.
		prepare func(t *testing.T, s *stack) (after func())
		kill    func(t *testing.T, s *stack, sha string)
		state   string // how the update ends
		// resumed: the deploy job itself was interrupted (the fetch of a
		// push happens in the push job, before there is a deployment).
		resumed bool
		// probe: v1 is probed from the kill until the update switches or
		// ends. A kill during the switch or the health check that follows
		// it has no such window: the switch stops v1 before starting v2.
		probe bool
	}{
		{
			name: "fetch",
			v1:   gittest.Behaviour{Version: "v1"},
			v2:   gittest.Behaviour{Version: "v2"},
			prepare: func(t *testing.T, s *stack) func() {
				s.fetchBaseline = s.fetchesInFlight.Load()
				return s.Git.Stall(s.Repo.FullName)
			},
			kill: func(t *testing.T, s *stack, _ string) {
				deploytest.Eventually(t, 30*time.Second, "a fetch in flight", func() (bool, error) {
					return s.fetchesInFlight.Load() > s.fetchBaseline, nil
				})
			},
			state: store.StateSucceeded,
			probe: true,
		},
		{
			name: "build",
			v1:   gittest.Behaviour{Version: "v1"},
			v2:   gittest.Behaviour{Version: "v2", BuildStep: true, BuildSleep: 6 * time.Second, BuildPrint: []string{"building slowly"}},
			kill: func(t *testing.T, s *stack, sha string) {
				d := s.deploymentOf(t, "web", sha)
				deploytest.Eventually(t, 60*time.Second, "the build step running", func() (bool, error) {
					return strings.Contains(strings.Join(s.Log(t, d.ID), "\n"), "building slowly"), nil
				})
			},
			state:   store.StateSucceeded,
			resumed: true,
			probe:   true,
		},
		{
			name: "health check",
			v1:   gittest.Behaviour{Version: "v1"},
			v2:   gittest.Behaviour{Version: "v2", StartDelay: 30 * time.Second},
			kill: func(t *testing.T, s *stack, sha string) {
				s.waitStep(t, s.deploymentOf(t, "web", sha).ID, "health")
			},
			// The retried check fails again (the app needs 30s, the check
			// gives 20s): v1 is restored.
			state:   store.StateFailed,
			resumed: true,
		},
		{
			name: "switch",
			v1:   gittest.Behaviour{Version: "v1", IgnoreTerm: true}, // stopping it takes the grace period
			v2:   gittest.Behaviour{Version: "v2"},
			kill: func(t *testing.T, s *stack, sha string) {
				s.waitStep(t, s.deploymentOf(t, "web", sha).ID, "switch")
			},
			state:   store.StateSucceeded,
			resumed: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "crash-"+strings.ReplaceAll(c.name, " ", "-"))
			sha1 := s.push(t, deploytest.Files(t, yml, c.v1))
			v1 := s.WaitFinished(t, s.deploymentOf(t, "web", sha1).ID, 90*time.Second)
			if v1.State != store.StateSucceeded {
				t.Fatalf("v1: %s %s", v1.State, v1.Description)
			}
			port := s.App(t, "web").HostPort

			after := func() {}
			if c.prepare != nil {
				after = c.prepare(t, s)
			}
			sha2 := s.push(t, gittest.AppFiles(t, "", c.v2))
			c.kill(t, s, sha2)
			probed := func() int { return 0 }
			if c.probe {
				probed = probePrevious(t, s, port, sha2)
			}
			s.killAndRestart(t)
			after()

			v2 := s.WaitFinished(t, s.deploymentOf(t, "web", sha2).ID, 150*time.Second)
			if n := probed(); c.probe && n == 0 {
				t.Fatal("v1 was never probed between the kill and the end of the update")
			}
			if v2.State != c.state {
				t.Fatalf("v2 after the crash: %s (%s), want %s\n%s", v2.State, v2.Description, c.state,
					strings.Join(s.Log(t, v2.ID), "\n"))
			}
			t.Logf("log of the interrupted update:\n%s", strings.Join(s.Log(t, v2.ID), "\n"))
			s.settled(t)
			want, cur := "v2", v2.ID
			if c.state != store.StateSucceeded {
				want, cur = "v1", v1.ID
			}
			if app := s.App(t, "web"); app.CurrentDeploymentID != cur || app.HostPort != port {
				t.Fatalf("app serves #%d on %d, want #%d on %d", app.CurrentDeploymentID, app.HostPort, cur, port)
			}
			if !deploytest.Serves(port, want) {
				t.Fatalf("%s does not serve after recovery", want)
			}
			// The job of the killed process is replaced by one that goes on
			// counting its attempts.
			const resumed = "Attempt 2 of 3: the previous attempt was interrupted"
			if log := strings.Join(s.Log(t, v2.ID), "\n"); c.resumed && !strings.Contains(log, resumed) {
				t.Errorf("the log does not tell of the interruption (%q):\n%s", resumed, log)
			}
		})
	}
}

// probePrevious asks the app on port every 100ms, from now (just before the
// kill) until the update of sha starts switching or ends, and fails the test
// at the first answer that is not v1's. Its result waits for the probing to
// end and returns how many answers were v1's.
func probePrevious(t *testing.T, s *stack, port int, sha string) (wait func() int) {
	t.Helper()
	done := make(chan int, 1)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done }) // a test that ends early stops the probe
	go func() {
		n := 0
		defer func() { done <- n; close(done) }()
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			select {
			case <-stop:
				return
			default:
			}
			var step string
			var finished bool
			err := s.Store.Pool().QueryRow(context.Background(), `SELECT step, finished_at IS NOT NULL FROM deployments
				WHERE sha = $1 ORDER BY id DESC LIMIT 1`, sha).Scan(&step, &finished)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) { // the push job makes the deployment
				t.Errorf("probe: read the update: %v", err)
				return
			}
			if finished || step == deploy.StepSwitch || step == deploy.StepHealth || step == deploy.StepRestore || step == "cleanup" {
				return
			}
			status, body, err := deploytest.Get(port, "/")
			if err != nil || status != 200 || strings.TrimSpace(body) != "version=v1" {
				t.Errorf("during the update (step %q) the app on %d answered %d %q (%v), want version=v1", step, port, status, body, err)
				return
			}
			n++
		}
		t.Error("probe: the update neither switched nor ended within 3 minutes")
	}()
	return func() int { return <-done }
}
