//go:build faults

package faults_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
)

// dockerDown is how long each Docker outage lasts.
const dockerDown = 10 * time.Second

// TestDockerUnreachable cuts `keystone serve` off the Docker engine (its
// DOCKER_HOST is a socket proxy the test cuts: socket and live connections
// closed, new ones refused) for ~10 s while an update builds, then again
// at the moment the next update starts its new container to switch to it.
// Each time the attempt that met the outage fails with its reason in the
// deployment's status and log, the deployment is retried per its policy
// once the engine answers again and succeeds, one attempt spent; the
// serving version answers through the router throughout; nothing is left
// pending or orphaned, and a later push deploys.
func TestDockerUnreachable(t *testing.T) {
	var cut *deploytest.DockerCut
	w := newWorld(t, "docker-down", "Docker unreachable ~10 s during a build, during a switch", withDockerCut(&cut))
	_, host, l := w.serveV1(40)

	// Cut while the image builds.
	v2 := w.push(gittest.Behaviour{Version: "v2", BuildStep: true, BuildSleep: 8 * time.Second,
		BuildPrint: []string{"building slowly"}})
	id2 := w.deploymentOf(v2)
	await(t, 2*time.Minute, "v2's build step running", func() bool {
		return strings.Contains(strings.Join(w.Log(t, id2), "\n"), "building slowly")
	})
	cut.Cut()
	w.dockerOutage(cut, v2, id2, "v2 (cut while building)")
	w.routed(host, "v2", time.Minute)

	// Cut as Keystone starts the new container beside the serving one:
	// the request to start it never reaches the engine.
	done := cut.CutAt("/start HTTP/1.1")
	v3 := w.push(gittest.Behaviour{Version: "v3"})
	id3 := w.deploymentOf(v3)
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("v3 never started its container:\n%s", strings.Join(w.Log(t, id3), "\n"))
	}
	w.dockerOutage(cut, v3, id3, "v3 (cut at the switch)")
	w.routed(host, "v3", time.Minute)

	// A later push deploys as usual.
	v4 := w.push(gittest.Behaviour{Version: "v4"})
	if st := w.finalStatus(v4, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("v4 after the outages: %s", st)
	}
	w.routed(host, "v4", time.Minute)
	before := l.answered()
	await(t, 30*time.Second, "answers after the last update", func() bool { return l.answered() > before+20 })

	sent, failed := l.finishWithoutFailures(t, "")
	w.settled()
	if n := len(w.Containers(t, "io.keystone.app="+w.repo+"/web")); n != 1 {
		t.Errorf("%d containers of web, want 1", n)
	}
	w.row.Faults += fmt.Sprintf(" (%d cuts)", cut.Cuts())
	t.Logf("load: %d sent, %d failed, by version %v", sent, failed, l.seen)
}

// dockerOutage holds the cut for dockerDown, restores it, and checks how
// deployment id of sha came through: the attempt that met the outage
// failed naming Docker, in its log and in a status GitHub got; one attempt
// was spent; the deployment succeeded on the next.
func (w *world) dockerOutage(cut *deploytest.DockerCut, sha string, id int64, what string) {
	w.t.Helper()
	cutAt := time.Now()
	time.Sleep(dockerDown) // the fault's duration
	cut.Restore()
	st := w.finalStatus(sha, 5*time.Minute)
	log := strings.Join(w.Log(w.t, id), "\n")
	w.t.Logf("%s: %s after a cut of %s; its log:\n%s", what, st, dockerDown, log)
	if !strings.HasPrefix(st, "success") {
		w.t.Errorf("%s ended %q, want success once Docker answers again", what, st)
	}
	if !strings.Contains(log, "Attempt 1 of 3 failed: ") || !strings.Contains(log, "Docker does not answer: waiting") ||
		!strings.Contains(log, "Docker answers again after") {
		w.t.Errorf("%s: the log does not say the attempt failed and waited for Docker:\n%s", what, log)
	}
	if n := w.deployAttempts(id); n != 2 {
		w.t.Errorf("%s: %d attempts, want 2 (one spent on the outage)", what, n)
	}
	reason := false
	for _, s := range w.GitHub.Statuses(w.repo, sha) {
		if s.CreatedAt.After(cutAt) && strings.Contains(s.Description, "Docker unreachable") {
			reason = true
			w.t.Logf("%s: GitHub was told %s %q", what, s.State, s.Description)
		}
	}
	if !reason {
		w.t.Errorf("%s: no status told GitHub Docker was unreachable: %+v", what, w.GitHub.Statuses(w.repo, sha))
	}
}

// deployAttempts is how many attempts the deploy job of deployment id ran.
func (w *world) deployAttempts(id int64) int {
	w.t.Helper()
	var n int
	if err := w.Store.Pool().QueryRow(context.Background(), `SELECT COALESCE(max(attempt), 0) FROM river_job
		WHERE kind = 'deploy' AND args->>'deployment_id' = $1`, strconv.FormatInt(id, 10)).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}
