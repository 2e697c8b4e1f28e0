// Package e2e_test runs the real `keystone serve` against the fake GitHub,
// the git server, real PostgreSQL and the real Docker engine: crash tests
// (SIGKILL at each step, then restart) and the deploy benchmark.
package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"maps"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/webhook"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const webhookSecret = "e2e-webhook-secret"

// stack is Keystone running as a process over one test's world.
type stack struct {
	*deploytest.Env
	env map[string]string
	ks  *keystonetest.Process
	// fetchesInFlight counts fetch requests (POSTs) the git server received.
	fetchesInFlight atomic.Int32
	fetchBaseline   int32
}

// newStack starts `keystone serve` over a new world, with extra added to
// its environment.
func newStack(t testing.TB, repo string, extra ...map[string]string) *stack {
	t.Helper()
	e := deploytest.New(t, repo)
	s := &stack{Env: e, env: map[string]string{
		"DATABASE_URL":                   e.DBURL,
		"KEYSTONE_GITHUB_WEBHOOK_SECRET": webhookSecret,
		"KEYSTONE_GITHUB_APP_ID":         strconv.FormatInt(e.GitHub.AppID, 10),
		"KEYSTONE_GITHUB_PRIVATE_KEY":    string(e.GitHub.PrivateKeyPEM),
		"KEYSTONE_GITHUB_API_URL":        e.GitHub.URL,
		"KEYSTONE_GITHUB_WEB_URL":        e.Git.URL, // pushes' clone_url must be under it
		"KEYSTONE_DATA_DIR":              t.TempDir(),
		"KEYSTONE_PORT_RANGE":            e.PortRange.String(),
		"KEYSTONE_WORKERS":               "2",
	}}
	for _, env := range extra {
		maps.Copy(s.env, env)
	}
	e.Git.OnRequest(func(r *http.Request) {
		if r.Method == http.MethodPost {
			s.fetchesInFlight.Add(1)
		}
	})
	s.start(t)
	return s
}

func (s *stack) start(t testing.TB) { s.ks = keystonetest.Start(t, s.env) }

// push commits files on main and delivers the webhook to Keystone.
func (s *stack) push(t testing.TB, files map[string][]byte) string {
	t.Helper()
	sha := s.Repo.Commit(t, "main", files, "change")
	s.deliver(t, s.Repo.PushEvent("main", sha, "alice"))
	return sha
}

func (s *stack) deliver(t testing.TB, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.ks.URL+"/webhooks/github", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", rand.Text())
	req.Header.Set("X-Hub-Signature-256", webhook.Sign([]byte(webhookSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
}

// deploymentOf waits until a deployment of sha exists and returns it.
func (s *stack) deploymentOf(t testing.TB, app, sha string) store.Deployment {
	t.Helper()
	var found store.Deployment
	deploytest.Eventually(t, 60*time.Second, "a deployment of "+sha[:7], func() (bool, error) {
		for _, d := range s.Deployments(t, app) {
			if d.SHA == sha {
				found = d
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// waitStep waits until deployment id is at step.
func (s *stack) waitStep(t testing.TB, id int64, step string) {
	t.Helper()
	deploytest.Eventually(t, 60*time.Second, "deployment at step "+step, func() (bool, error) {
		d, err := s.Store.Deployment(context.Background(), id)
		return err == nil && d.Step == step, err
	})
}

// killAndRestart SIGKILLs Keystone, waits until its running jobs are old
// enough for the next process's rescuer to take them at start-up, and
// starts Keystone again.
func (s *stack) killAndRestart(t testing.TB) {
	t.Helper()
	s.ks.Kill()
	deploytest.Eventually(t, 30*time.Second, "the dead process's jobs older than the rescue grace", func() (bool, error) {
		var young int
		err := s.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM river_job
			WHERE state = 'running' AND attempted_at > now() - interval '6 seconds'`).Scan(&young)
		return err == nil && young == 0, err
	})
	s.start(t)
}

// settled asserts the consistent state after recovery: nothing pending,
// every delivery processed, and exactly the serving container of each app.
func (s *stack) settled(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	deploytest.Eventually(t, 120*time.Second, "no unfinished deployment, job or delivery", func() (bool, error) {
		var pending int
		err := s.Store.Pool().QueryRow(ctx, `SELECT
			(SELECT count(*) FROM deployments WHERE finished_at IS NULL) +
			(SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled')
			AND id NOT IN (SELECT job_id FROM job_rescues)) +
			(SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL)`).Scan(&pending)
		return err == nil && pending == 0, err
	})
	apps, err := s.Store.AllApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range apps {
		list := s.Containers(t, "io.keystone.app="+app.Key())
		if app.CurrentDeploymentID == 0 {
			if len(list) != 0 {
				t.Errorf("%s serves nothing but has %d containers", app.Key(), len(list))
			}
			continue
		}
		want := strconv.FormatInt(app.CurrentDeploymentID, 10)
		deploytest.Eventually(t, 30*time.Second, "only the serving container of "+app.Key(), func() (bool, error) {
			list = s.Containers(t, "io.keystone.app="+app.Key())
			return len(list) == 1 && list[0].Labels["io.keystone.deployment"] == want && list[0].State == "running", nil
		})
	}
}

// TestReadyzPingsDocker: /readyz reports the Docker engine, and answers 503
// naming it when the engine cannot be reached.
func TestReadyzPingsDocker(t *testing.T) {
	t.Parallel()
	s := newStack(t, "readyz")
	get := func(url string) (int, map[string]string) {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	if code, body := get(s.ks.URL); code != http.StatusOK || body["docker"] != "ok" || body["database"] != "ok" {
		t.Fatalf("/readyz with Docker up: %d %v", code, body)
	}
	env := maps.Clone(s.env)
	env["DOCKER_HOST"] = "unix://" + filepath.Join(t.TempDir(), "no-docker.sock")
	down := keystonetest.Start(t, env)
	if code, body := get(down.URL); code != http.StatusServiceUnavailable || body["docker"] != "unavailable" || body["database"] != "ok" {
		t.Fatalf("/readyz with Docker unreachable: %d %v", code, body)
	}
}
