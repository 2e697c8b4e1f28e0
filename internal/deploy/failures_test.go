package deploy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// deployV1 pushes and deploys version v1 of app "web" and returns the
// deployment and the app's host port.
func deployV1(t *testing.T, h *harness, extra ...string) (store.Deployment, int) {
	t.Helper()
	sha := h.push(t, "main", deploytest.Files(t, ymlApp("web", extra...), gittest.Behaviour{Version: "v1"}))
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateSucceeded)
	port := h.App(t, "web").HostPort
	if !deploytest.Serves(port, "v1") {
		t.Fatal("v1 does not serve")
	}
	return d, port
}

// stillServesV1 asserts the failed change left v1 serving alone.
func stillServesV1(t *testing.T, h *harness, v1 store.Deployment, port int) {
	t.Helper()
	if !deploytest.Serves(port, "v1") {
		t.Fatal("v1 no longer serves after the failure")
	}
	app := h.App(t, "web")
	if app.CurrentDeploymentID != v1.ID {
		t.Fatalf("current deployment %d, want v1's %d", app.CurrentDeploymentID, v1.ID)
	}
	deploytest.Eventually(t, 10*time.Second, "only v1's container left", func() (bool, error) {
		list := h.Containers(t, deploy.LabelApp+"="+app.Key())
		return len(list) == 1 && list[0].Labels[deploy.LabelDeployment] == strconv.FormatInt(v1.ID, 10), nil
	})
}

func TestInvalidConfigFailsNamingTheLine(t *testing.T) {
	h := newHarness(t, "badconfig")
	v1, port := deployV1(t, h)
	bad := []byte("apps:\n  - name: web\n    branch: main\n    prot: 8080\n    memory: lots\n")
	sha := h.push(t, "main", map[string][]byte{".keystone.yml": bad})
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateFailed)
	if d.Description != `Invalid .keystone.yml: line 4: unknown key "prot"` {
		t.Errorf("description %q", d.Description)
	}
	log := strings.Join(h.Log(t, d.ID), "\n")
	for _, want := range []string{`line 4: unknown key "prot"`, `line 5: memory must be a size`, `line 2: app "web": port is required`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	stillServesV1(t, h, v1, port)
	_ = v1
}

// TestInvalidConfigWithNoKnownAppEndsQuietly: nothing to attach the failure
// to: the delivery is processed and logged, no deployment made.
func TestInvalidConfigWithNoKnownAppEndsQuietly(t *testing.T) {
	h := newHarness(t, "nothingyet")
	h.push(t, "main", map[string][]byte{".keystone.yml": []byte("apps: [\n")})
	deploytest.Eventually(t, 30*time.Second, "the delivery processed", func() (bool, error) {
		var n int
		err := h.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL`).Scan(&n)
		return err == nil && n == 0, err
	})
	var n int
	if err := h.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM deployments`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d deployments recorded, want 0 (%v)", n, err)
	}
	if !strings.Contains(h.logs.String(), "no app to report it on") {
		t.Errorf("nothing logged about the invalid file:\n%s", h.logs.String())
	}
}

func TestFailingBuildNamesTheStep(t *testing.T) {
	h := newHarness(t, "badbuild")
	v1, port := deployV1(t, h)
	files := gittest.AppFiles(t, "", gittest.Behaviour{Version: "v2", BuildStep: true, BuildExit: 3, BuildPrint: []string{"compiling", "oops"}})
	sha := h.push(t, "main", files)
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateFailed)
	if d.Description != `Build failed: step 3/3 (RUN ["/app", "build-step"]) exited 3` {
		t.Errorf("description %q", d.Description)
	}
	log := strings.Join(h.Log(t, d.ID), "\n")
	if !strings.Contains(log, "oops") || !strings.Contains(log, "exit code: 3") {
		t.Errorf("log lacks the build's output:\n%s", log)
	}
	stillServesV1(t, h, v1, port)
	if len(h.Images(t, deploy.LabelDeployment+"="+strconv.FormatInt(d.ID, 10))) != 0 {
		t.Error("the failed build left a labelled image")
	}
}

func TestMissingDockerfileFailsTheBuild(t *testing.T) {
	h := newHarness(t, "nodockerfile")
	v1, port := deployV1(t, h)
	sha := h.push(t, "main", map[string][]byte{".keystone.yml": ymlApp("web", "dockerfile: docker/Dockerfile")})
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateFailed)
	if d.Description != "Build failed: docker/Dockerfile not found in "+sha[:7] {
		t.Errorf("description %q", d.Description)
	}
	stillServesV1(t, h, v1, port)
}

// TestFailingHealthKeepsThePreviousVersion: the new container answers 500;
// the old one is restored and answers, the failed one is removed with its
// output kept in the log, and the outage is measured.
func TestFailingHealthKeepsThePreviousVersion(t *testing.T) {
	h := newHarness(t, "badhealth")
	v1, port := deployV1(t, h, "health_check_timeout: 2s")
	sha := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2", "health": 500, "print": ["v2 is broken"]}`)})
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateFailed)
	want := "Health check failed: GET /healthz 500 after 2." // "after 2.0s" give or take a probe
	if !strings.HasPrefix(d.Description, want) || !strings.HasSuffix(d.Description, "; "+v1.SHA[:7]+" still serving") {
		t.Errorf("description %q", d.Description)
	}
	if d.HealthStatus != 500 || d.HealthMS != 0 || d.HealthError == "" || d.DowntimeMS == nil {
		t.Errorf("health %d in %dms (%q), downtime %v", d.HealthStatus, d.HealthMS, d.HealthError, d.DowntimeMS)
	}
	log := strings.Join(h.Log(t, d.ID), "\n")
	if !strings.Contains(log, "v2 is broken") {
		t.Errorf("the failed container's output is not in the log:\n%s", log)
	}
	// (An attempt cut short by the engine is retried from the fetch; the
	// last attempt's steps end the list.)
	if got := strings.Join(h.steps(t, d.ID), ","); !strings.HasSuffix(got, "fetch,build,start,switch,health,restore") {
		t.Errorf("steps %v; log:\n%s", got, log)
	} else if got != "fetch,build,start,switch,health,restore" {
		t.Logf("the update was retried; log:\n%s", log)
	}
	stillServesV1(t, h, v1, port)
}

// TestFirstDeployFailingHealthLeavesNothing: nothing served before, so
// nothing serves after, and nothing is left running.
func TestFirstDeployFailingHealthLeavesNothing(t *testing.T) {
	h := newHarness(t, "firstbad")
	sha := h.push(t, "main", deploytest.Files(t, ymlApp("web", "health_check_timeout: 1s"), gittest.Behaviour{Version: "v1", Health: 503}))
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateFailed)
	if !regexp.MustCompile(`^Health check failed: GET /healthz 503 after 1\.\ds$`).MatchString(d.Description) {
		t.Errorf("description %q", d.Description)
	}
	if app := h.App(t, "web"); app.CurrentDeploymentID != 0 || len(h.Containers(t)) != 0 {
		t.Fatalf("current %d, containers %d", app.CurrentDeploymentID, len(h.Containers(t)))
	}
}

// TestSupersededPushesAreNotRun: while the app is busy, two pushes queue;
// the newer supersedes the older, which never starts.
func TestSupersededPushesAreNotRun(t *testing.T) {
	h := newHarness(t, "busy")
	deployV1(t, h)
	app := h.App(t, "web")
	release := h.lockApp(t, app.ID) // a job of the app "runs"
	sha2 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	sha3 := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v3"}`)})
	var d2 store.Deployment
	deploytest.Eventually(t, 30*time.Second, "v2 superseded", func() (bool, error) {
		for _, d := range h.Deployments(t, "web") {
			if d.SHA == sha2 {
				d2 = d
			}
		}
		return d2.State == store.StateSuperseded, nil
	})
	release()
	d3 := h.deployOf(t, "web", sha3)
	mustState(t, d3, store.StateSucceeded)
	d2 = h.WaitFinished(t, d2.ID, time.Second)
	if d2.Description != "Not deployed: superseded by "+sha3[:7] || d2.StartedAt != nil {
		t.Errorf("v2: %q, started %v", d2.Description, d2.StartedAt)
	}
	if !deploytest.Serves(app.HostPort, "v3") {
		t.Error("v3 does not serve")
	}
}

// TestLatePushOfAnOlderCommitIsSuperseded: a push delivered after a newer
// one (a redelivery) never deploys its older commit.
func TestLatePushOfAnOlderCommitIsSuperseded(t *testing.T) {
	h := newHarness(t, "late")
	deployV1(t, h)
	older := h.Repo.Commit(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "old"}`)}, "old")
	newer := h.Repo.Commit(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "new"}`)}, "new")
	h.deliver(t, h.Repo.PushEvent("main", newer, "alice"))
	dNew := h.deployOf(t, "web", newer)
	mustState(t, dNew, store.StateSucceeded)
	h.deliver(t, withPushedAt(t, h.Repo.PushEvent("main", older, "alice"), time.Now().Add(-time.Hour)))
	dOld := h.deployOf(t, "web", older)
	mustState(t, dOld, store.StateSuperseded)
	if dOld.Description != "Not deployed: superseded by "+newer[:7] {
		t.Errorf("description %q", dOld.Description)
	}
	if !deploytest.Serves(h.App(t, "web").HostPort, "new") {
		t.Error("the newer commit does not serve")
	}
}

func TestPushToLockedAppIsRecordedNotDeployed(t *testing.T) {
	h := newHarness(t, "locked")
	v1, port := deployV1(t, h)
	if _, err := h.Store.Pool().Exec(context.Background(), `UPDATE apps SET locked_by = 'alice',
		locked_reason = 'release freeze', locked_at = now() WHERE name = 'web'`); err != nil {
		t.Fatal(err)
	}
	sha := h.push(t, "main", map[string][]byte{"behaviour.json": []byte(`{"version": "v2"}`)})
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateErrored)
	if d.Description != "Not deployed: web is locked by @alice (release freeze)" || d.StartedAt != nil {
		t.Errorf("description %q, started %v", d.Description, d.StartedAt)
	}
	stillServesV1(t, h, v1, port)
}

// TestPushToAnUntrackedBranchEndsQuietly: the file lists no app for the
// branch: no deployment.
func TestPushToAnUntrackedBranchEndsQuietly(t *testing.T) {
	h := newHarness(t, "untracked")
	deployV1(t, h)
	h.push(t, "feature", map[string][]byte{"behaviour.json": []byte(`{"version": "wip"}`)})
	deploytest.Eventually(t, 30*time.Second, "the delivery processed", func() (bool, error) {
		var n int
		err := h.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL`).Scan(&n)
		return err == nil && n == 0, err
	})
	if n := len(h.Deployments(t, "web")); n != 1 {
		t.Fatalf("%d deployments, want only v1's", n)
	}
}

// TestAppRemovedFromConfig: an app the file no longer lists is removed:
// its container stopped by reconciliation, its port released.
func TestAppRemovedFromConfig(t *testing.T) {
	h := newHarness(t, "removal")
	yml := []byte("apps:\n  - {name: web, branch: main, port: 8080, health_check_path: /healthz}\n  - {name: api, branch: main, port: 8080, health_check_path: /healthz}\n")
	sha := h.push(t, "main", deploytest.Files(t, yml, gittest.Behaviour{Version: "v1"}))
	mustState(t, h.deployOf(t, "web", sha), store.StateSucceeded)
	mustState(t, h.deployOf(t, "api", sha), store.StateSucceeded)
	apiPort := h.App(t, "api").HostPort
	sha2 := h.push(t, "main", map[string][]byte{".keystone.yml": ymlApp("web"), "behaviour.json": []byte(`{"version": "v2"}`)})
	mustState(t, h.deployOf(t, "web", sha2), store.StateSucceeded)
	api, err := h.Store.AppByName(context.Background(), h.Repo.Owner, h.Repo.Name, "api")
	if err != nil || api.RemovedAt == nil || api.HostPort != 0 {
		t.Fatalf("api after removal: %+v, %v", api, err)
	}
	if err := h.engine.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Containers(t, deploy.LabelApp+"="+api.Key())) + len(h.Images(t, deploy.LabelApp+"="+api.Key())); n != 0 {
		t.Fatalf("%d containers and images of the removed app left", n)
	}
	if deploytest.Serves(apiPort, "v1") {
		t.Fatal("the removed app still answers")
	}
}

func TestBuildTimeoutFailsTheBuild(t *testing.T) {
	h := newHarness(t, "slowbuild", func(o *options) { o.cfg.BuildTimeout = 3 * time.Second })
	files := deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1", BuildStep: true, BuildSleep: time.Minute})
	sha := h.push(t, "main", files)
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateFailed)
	if d.Description != "Build failed: timed out after 3s" {
		t.Errorf("description %q", d.Description)
	}
	deploytest.Eventually(t, 30*time.Second, "the build's containers gone", func() (bool, error) {
		return len(h.Containers(t)) == 0, nil
	})
}

// TestUnreachableEngineEndsErroredAfterItsAttempts: Keystone's fault, not
// the app's: the deployment is retried, then ends errored naming the
// cause; nothing stays pending.
func TestUnreachableEngineEndsErroredAfterItsAttempts(t *testing.T) {
	h := newHarness(t, "noengine", func(o *options) {
		o.docker = "unix://" + filepath.Join(t.TempDir(), "no-docker.sock")
		o.cfg.DockerWait = 500 * time.Millisecond // each attempt waits for the engine first (dockerwait_test.go)
	})
	sha := h.push(t, "main", deploytest.Files(t, ymlApp("web"), gittest.Behaviour{Version: "v1"}))
	d := h.deployOf(t, "web", sha)
	mustState(t, d, store.StateErrored)
	if d.Description != "Deploy errored: Docker unreachable" {
		t.Errorf("description %q", d.Description)
	}
	log := strings.Join(h.Log(t, d.ID), "\n")
	for _, want := range []string{"Attempt 1 of 3 failed", "Attempt 2 of 3 failed", "Attempt 3 of 3 failed",
		"Docker still does not answer after 0.5s"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// A retry after a failed attempt is not an interruption.
	if strings.Contains(log, "interrupted") {
		t.Errorf("the log calls an ordinary retry an interruption:\n%s", log)
	}
	deploytest.Eventually(t, 10*time.Second, "no job pending", func() (bool, error) {
		var pending int
		err := h.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM river_job
			WHERE state NOT IN ('completed', 'discarded', 'cancelled')`).Scan(&pending)
		return err == nil && pending == 0, fmt.Errorf("%d pending, %v", pending, err)
	})
}
