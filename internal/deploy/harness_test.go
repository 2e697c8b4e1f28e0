package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/testlog"
	"github.com/keystone-app/keystone/internal/webhook"
)

// TestMain runs the package's tests, four at a time unless -test.parallel
// says otherwise: they spend most of their time waiting on the engine (builds,
// health checks), not on the CPU.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "4")
	}
	storetest.Main(m)
}

var debugLogs bool

// harness runs the engine in this process against the real database,
// Docker and git, with the fake GitHub.
type harness struct {
	*deploytest.Env
	engine  *deploy.Engine
	jobs    *river.Client[pgx.Tx]
	intake  *queue.Intake
	logs    *testlog.Buffer
	tokens  *recordingTokens
	secrets *mapSecrets
	dataDir string
	opts    options // the engine's, for restart
}

type options struct {
	cfg     deploy.Config
	workers int
	docker  string // the engine's DOCKER_HOST; "" for the test's engine
	// notifier hears of deployments; nil: nobody.
	notifier deploy.Notifier
	routes   deploy.RouteTable
	// now is the engine's clock; nil: time.Now.
	now func() time.Time
}

func newHarness(t *testing.T, repo string, opts ...func(*options)) *harness {
	t.Helper()
	// Each test has its own database (so its own instance id), repository and
	// ports: they run side by side, mostly waiting on builds and checks.
	t.Parallel()
	env := deploytest.New(t, repo)
	app, err := github.New(github.Config{AppID: env.GitHub.AppID, PrivateKeyPEM: env.GitHub.PrivateKeyPEM, APIURL: env.GitHub.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{Env: env, logs: &testlog.Buffer{}, tokens: &recordingTokens{src: app}, secrets: &mapSecrets{},
		dataDir: t.TempDir()}
	o := options{workers: 4, cfg: deploy.Config{
		DataDir: h.dataDir, PortRange: env.PortRange, StopTimeout: 2 * time.Second,
		HealthInterval: 50 * time.Millisecond, NoPathWait: 2 * time.Second, ReconcileInterval: time.Hour,
	}}
	for _, opt := range opts {
		opt(&o)
	}
	h.start(t, o)
	if debugLogs {
		t.Cleanup(func() { t.Log(h.logs.String()) })
	}
	return h
}

// start runs an engine and its job workers with o, as `keystone serve`
// would; restart stops them and starts them again with changed options.
func (h *harness) start(t *testing.T, o options) {
	t.Helper()
	h.opts = o
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var engineDocker deploy.Docker = h.Docker
	if o.docker != "" {
		c, err := client.NewClientWithOpts(client.WithHost(o.docker), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		engineDocker = c
	}
	var err error
	h.engine, err = deploy.New(deploy.Deps{Store: h.Store, Docker: engineDocker, Tokens: h.tokens, Secrets: h.secrets,
		Notifier: o.notifier, Routes: o.routes, Logger: logger, Jobs: lateJobList{h}, Now: o.now}, o.cfg)
	if err != nil {
		t.Fatal(err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, h.engine.PushWorker())
	river.AddWorker(workers, h.engine.DeployWorker())
	jobs, err := queue.NewClient(h.Store.Pool(), workers, queue.Config{
		DeployWorkers: o.workers, FetchPollInterval: 50 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := jobs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.jobs = jobs
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = jobs.Stop(ctx)
	})
	h.intake = queue.NewIntake(h.Store, h.jobs)
}

// restart stops the engine's job workers (letting running jobs finish) and
// starts a new engine with the options changed by change.
func (h *harness) restart(t *testing.T, change func(*options)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.jobs.Stop(ctx); err != nil {
		t.Fatalf("stop the engine's jobs: %v", err)
	}
	o := h.opts
	change(&o)
	h.start(t, o)
}

// lockApp takes the app's lock as a job of it would, once the job that just
// deployed it let go (it holds the lock a moment after its deployment
// finished); release is idempotent and runs at the test's end too.
func (h *harness) lockApp(t *testing.T, appID int64) (release func()) {
	t.Helper()
	deploytest.Eventually(t, time.Minute, "the app's lock, once its last job let go", func() (bool, error) {
		_, r, ok, err := h.Store.TryLockApp(context.Background(), appID)
		release = r
		return ok, err
	})
	t.Cleanup(release)
	return release
}

// push commits files on branch and delivers the push webhook as the intake
// does; it returns the commit's SHA.
func (h *harness) push(t *testing.T, branch string, files map[string][]byte) string {
	t.Helper()
	sha := h.Repo.Commit(t, branch, files, "change")
	h.deliver(t, h.Repo.PushEvent(branch, sha, "alice"))
	return sha
}

// deliver records a push webhook body with its job.
func (h *harness) deliver(t *testing.T, body []byte) {
	t.Helper()
	if _, err := h.intake.Record(context.Background(), webhook.Delivery{GUID: rand.Text(), Event: "push",
		InstallationID: deploytest.Installation, Repository: h.Repo.FullName, Payload: body}); err != nil {
		t.Fatal(err)
	}
}

// deployOf waits for the deployment of sha for app and for it to finish.
func (h *harness) deployOf(t *testing.T, app, sha string) store.Deployment {
	t.Helper()
	var id int64
	deploytest.Eventually(t, 60*time.Second, "a deployment of "+sha[:7], func() (bool, error) {
		for _, d := range h.Deployments(t, app) {
			if d.SHA == sha {
				id = d.ID
				return true, nil
			}
		}
		return false, nil
	})
	d := h.WaitFinished(t, id, 90*time.Second)
	if d.State == store.StateSucceeded {
		h.cleanedUp(t, d.ID)
	}
	return d
}

// logging waits until the deployment of sha of app has logged a line
// containing text (what, for the failure message) and returns its id.
func (h *harness) logging(t *testing.T, app, sha, text, what string) int64 {
	t.Helper()
	var id int64
	deploytest.Eventually(t, time.Minute, what, func() (bool, error) {
		for _, d := range h.Deployments(t, app) {
			if d.SHA == sha {
				id = d.ID
			}
		}
		return id != 0 && strings.Contains(strings.Join(h.Log(t, id), "\n"), text), nil
	})
	return id
}

// cleanedUp waits until a successful deployment's cleanup step (removing
// the previous container, pruning images) has ended.
func (h *harness) cleanedUp(t *testing.T, id int64) {
	t.Helper()
	deploytest.Eventually(t, 2*time.Minute, "the cleanup of a deployment", func() (bool, error) {
		steps, err := h.Store.StepsOf(context.Background(), id)
		for _, s := range steps {
			if s.Name == "cleanup" && s.FinishedAt != nil {
				return true, nil
			}
		}
		return false, err
	})
}

// steps returns the names of a deployment's steps.
func (h *harness) steps(t *testing.T, id int64) []string {
	t.Helper()
	steps, err := h.Store.StepsOf(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	return names
}

func mustState(t *testing.T, d store.Deployment, state string) {
	t.Helper()
	if d.State != state {
		t.Fatalf("deployment %d (%s): state %s (%s), want %s", d.ID, d.SHA[:7], d.State, d.Description, state)
	}
}

// recordingTokens hands out installation tokens and remembers them, so
// tests can look for them where they must not be.
type recordingTokens struct {
	src deploy.TokenSource
	mu  sync.Mutex
	all []string
}

func (r *recordingTokens) InstallationToken(ctx context.Context, id int64) (string, error) {
	tok, err := r.src.InstallationToken(ctx, id)
	if err == nil {
		r.mu.Lock()
		if !slices.Contains(r.all, tok) {
			r.all = append(r.all, tok)
		}
		r.mu.Unlock()
	}
	return tok, err
}

func (r *recordingTokens) issued() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// mapSecrets is deploy.Secrets over a map, standing in for the encrypted
// store another capability provides.
type mapSecrets struct {
	mu sync.Mutex
	m  map[int64]map[string]string
}

func (s *mapSecrets) AppSecrets(_ context.Context, appID int64) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[appID], nil
}

func (s *mapSecrets) set(appID int64, kv map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[int64]map[string]string{}
	}
	s.m[appID] = kv
}

// withPushedAt rewrites a push payload's repository.pushed_at.
func withPushedAt(t *testing.T, body []byte, at time.Time) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m["repository"].(map[string]any)["pushed_at"] = at.Unix()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ymlApp is a .keystone.yml with one app of the test app on main, a
// health check of 4s unless extra lines (keys of the app) set another.
func ymlApp(name string, extra ...string) []byte {
	timeout := "    health_check_timeout: 4s\n"
	for _, l := range extra {
		if strings.HasPrefix(l, "health_check_timeout:") {
			timeout = ""
		}
	}
	return []byte(fmt.Sprintf("apps:\n  - name: %s\n    branch: main\n    port: 8080\n    health_check_path: /healthz\n%s%s",
		name, timeout, indent(extra)))
}

func indent(lines []string) string {
	s := ""
	for _, l := range lines {
		s += "    " + l + "\n"
	}
	return s
}

// lateJobList lists through the harness's job client, built after the engine.
type lateJobList struct{ h *harness }

func (l lateJobList) JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error) {
	return l.h.jobs.JobList(ctx, params)
}
