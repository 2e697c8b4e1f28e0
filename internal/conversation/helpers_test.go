package conversation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/conversation"
	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const (
	inst     = 42
	fullRepo = "acme/web"
	sha1     = "1111111111111111111111111111111111111111"
	sha2     = "2222222222222222222222222222222222222222"
)

var links = conversation.Links{PublicURL: "https://keystone.example/", GitHubWebURL: "https://github.example",
	Apps: appurl.Config{AppHost: "apps.example"}}

// env is one test's database, fake GitHub, notifier, command worker and a
// stand-in for the deploy engine.
type env struct {
	t        *testing.T
	st       *store.Store
	gh       *githubtest.Server
	app      *github.App
	notifier *conversation.Notifier
	engine   *standInEngine
	commands *conversation.Commands
	web      store.App
	logs     *lockedBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	srv := githubtest.New(t)
	srv.AddInstallation(inst, "acme", "web", "multi", "empty")
	srv.SetPermission(fullRepo, "alice", "write")
	srv.SetPermission(fullRepo, "mia", "maintain")
	srv.SetPermission(fullRepo, "bob", "read")
	srv.SetPermission("acme/multi", "alice", "admin")
	app, err := github.New(github.Config{AppID: srv.AppID, PrivateKeyPEM: srv.PrivateKeyPEM, APIURL: srv.URL,
		MaxAttempts: 2, MaxWait: 500 * time.Millisecond, RetryWaitMin: 10 * time.Millisecond,
		RetryWaitMax: 50 * time.Millisecond, RateLimitWait: time.Second, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n, err := conversation.NewNotifier(links)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, gh: srv, app: app, notifier: n, logs: &lockedBuffer{}}
	e.engine = &standInEngine{e: e}
	e.commands, err = conversation.NewCommands(conversation.CommandsConfig{Store: st, GitHub: app, Requester: e.engine,
		Links: links, Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.web = e.addApp("web", "web", 9001)
	e.addApp("multi", "api", 9002)
	e.addApp("multi", "web", 9003)
	outboxtest.Start(t, st, app, outboxtest.Config())
	return e
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ io.Writer = (*lockedBuffer)(nil)

func (e *env) addApp(repo, name string, port int) store.App {
	e.t.Helper()
	ctx := e.t.Context()
	var id int64
	err := e.st.Pool().QueryRow(ctx, `INSERT INTO apps (installation_id, owner, repo, name, branch, config, host_port)
		VALUES ($1, 'acme', $2, $3, 'main', '{"health_check_path": "/healthz"}', $4) RETURNING id`,
		inst, repo, name, port).Scan(&id)
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := e.st.App(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// standInEngine plays the deploy engine's part until it is merged: it
// creates deployments and moves them along, telling the notifier inside
// each transaction, as the engine's contract (internal/deploy/seams.go) says.
type standInEngine struct {
	e        *env
	mu       sync.Mutex
	requests []deploy.Request
	refuse   error
}

// Request creates the deployment a person asked for, like the engine.
func (s *standInEngine) Request(ctx context.Context, r deploy.Request) (store.Deployment, error) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	refuse := s.refuse
	s.mu.Unlock()
	if refuse != nil {
		return store.Deployment{}, refuse
	}
	sha := r.SHA
	switch {
	case sha == "" && r.Kind == store.KindRollback:
		sha = sha1
	case sha == "":
		sha = sha2 // the branch head
	}
	if len(sha) < 40 {
		sha = strings.Repeat(sha, 40)[:40]
	}
	return s.create(ctx, r.AppID, r.Kind, sha, r.Actor, r.Trigger, "")
}

func (s *standInEngine) Requests() []deploy.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]deploy.Request(nil), s.requests...)
}

// create inserts a queued deployment (or one in a final state when state
// is given) and notifies, in one transaction.
func (s *standInEngine) create(ctx context.Context, appID int64, kind, sha, actor, trigger, description string) (store.Deployment, error) {
	var d store.Deployment
	err := s.e.st.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO deployments (app_id, kind, sha, ref, actor, trigger, description)
			VALUES ($1, $2, $3, 'refs/heads/main', $4, $5, 'Queued') RETURNING id`,
			appID, kind, sha, actor, trigger).Scan(&id); err != nil {
			return err
		}
		return s.notify(ctx, tx, q, id, &d)
	})
	return d, err
}

// move changes a deployment as the engine would and notifies.
func (s *standInEngine) move(d store.Deployment, set string, args ...any) store.Deployment {
	s.e.t.Helper()
	ctx := s.e.t.Context()
	err := s.e.st.InTx(ctx, func(tx pgx.Tx, q *store.Queries) error {
		if _, err := tx.Exec(ctx, `UPDATE deployments SET `+set+` WHERE id = $1`, append([]any{d.ID}, args...)...); err != nil {
			return err
		}
		return s.notify(ctx, tx, q, d.ID, &d)
	})
	if err != nil {
		s.e.t.Fatal(err)
	}
	return d
}

func (s *standInEngine) notify(ctx context.Context, tx pgx.Tx, q *store.Queries, id int64, out *store.Deployment) error {
	d, err := q.Deployment(ctx, id)
	if err != nil {
		return err
	}
	app, err := q.App(ctx, d.AppID)
	if err != nil {
		return err
	}
	*out = d
	return s.e.notifier.DeploymentChanged(ctx, tx, app, d)
}

// run moves d through the steps of SPEC §7 to success or to outcome.
func (s *standInEngine) run(d store.Deployment, outcome string) store.Deployment {
	short := d.SHA[:7]
	d = s.move(d, `state = 'running', step = 'fetch', description = $2, started_at = now()`, "Fetching "+short)
	d = s.move(d, `step = 'build', description = $2`, "Building "+short)
	if outcome == "build failed" {
		return s.move(d, `state = 'failed', description = $2, finished_at = now()`, "Build failed: step 3/5 exited 1")
	}
	d = s.move(d, `step = 'start', description = $2`, "Starting "+short)
	d = s.move(d, `step = 'health', description = 'Checking health'`)
	if outcome == "unhealthy" {
		return s.move(d, `state = 'failed', health_status = 500, health_error = $2, description = $3, finished_at = now()`,
			"GET /healthz 500 after 30s", "Health check failed: GET /healthz 500 after 30s; 1111111 still serving")
	}
	d = s.move(d, `state = 'succeeded', health_status = 200, health_ms = 1200, description = $2, finished_at = now()`,
		"Deployed in 12.3s · healthy (GET /healthz 200)")
	if _, err := s.e.st.Pool().Exec(s.e.t.Context(), `UPDATE apps SET current_deployment_id = $1 WHERE id = $2`, d.ID, d.AppID); err != nil {
		s.e.t.Fatal(err)
	}
	return d
}

// pushDeploy creates a push deployment of sha on web and runs it.
func (e *env) pushDeploy(sha, outcome string) store.Deployment {
	e.t.Helper()
	d, err := e.engine.create(e.t.Context(), e.web.ID, store.KindUpdate, sha, "octocat", store.TriggerPush, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return e.engine.run(d, outcome)
}

// comment is an issue_comment delivery.
type comment struct {
	repo, user, userType, body, action string
	issue                              int
	viaApp                             int64
}

// deliver stores the delivery of c as the intake would and runs the comment
// job's worker on it; it returns the fake's comment and the job's error.
func (e *env) deliver(c comment) (githubtest.Comment, error) {
	e.t.Helper()
	c.repo = cmpOr(c.repo, fullRepo)
	c.action = cmpOr(c.action, "created")
	c.userType = cmpOr(c.userType, "User")
	if c.issue == 0 {
		c.issue = 7
	}
	gc := e.gh.AddComment(c.repo, c.issue, c.user, c.body)
	owner, name, _ := strings.Cut(c.repo, "/")
	var via any
	if c.viaApp != 0 {
		via = map[string]any{"id": c.viaApp, "slug": "other"}
	}
	user := map[string]any{"login": c.user, "type": c.userType}
	payload, _ := json.Marshal(map[string]any{
		"action":       c.action,
		"comment":      map[string]any{"id": gc.ID, "body": c.body, "user": user, "performed_via_github_app": via},
		"issue":        map[string]any{"number": c.issue, "pull_request": map[string]any{"url": "x"}},
		"repository":   map[string]any{"name": name, "full_name": c.repo, "owner": map[string]any{"login": owner}},
		"sender":       user,
		"installation": map[string]any{"id": inst},
	})
	id, _, err := e.st.InsertDelivery(e.t.Context(), store.Delivery{GUID: fmt.Sprintf("guid-%d", gc.ID),
		Event: "issue_comment", Action: c.action, InstallationID: inst, Repository: c.repo, Payload: payload})
	if err != nil {
		e.t.Fatal(err)
	}
	return gc, e.work(id)
}

// work runs the comment worker on delivery id, as River would.
func (e *env) work(deliveryID int64) error {
	job := &river.Job[queue.CommentArgs]{JobRow: &rivertype.JobRow{ID: deliveryID + 1000}, Args: queue.CommentArgs{DeliveryID: deliveryID}}
	return e.commands.Work(e.t.Context(), job)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// replies returns Keystone's comments (by its bot, with a thread marker) on
// issue of repo once the outbox is idle.
func (e *env) replies(repo string, issue int) []githubtest.Comment {
	e.t.Helper()
	outboxtest.WaitIdle(e.t, e.st, 20*time.Second)
	var out []githubtest.Comment
	for _, c := range e.gh.Comments(repo, issue) {
		if c.User == e.gh.Slug+"[bot]" && strings.Contains(c.Body, "<!-- keystone:thread=") {
			out = append(out, c)
		}
	}
	return out
}

// audit returns the audit actions recorded, in order.
func (e *env) audit() []string {
	e.t.Helper()
	rows, err := e.st.Pool().Query(e.t.Context(), `SELECT action || ' ' || actor || ' ' || target FROM audit_events ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func (e *env) processed(deliveryGUID string) bool {
	e.t.Helper()
	var done bool
	err := e.st.Pool().QueryRow(e.t.Context(), `SELECT processed_at IS NOT NULL FROM webhook_deliveries WHERE guid = $1`,
		deliveryGUID).Scan(&done)
	if err != nil {
		e.t.Fatal(err)
	}
	return done
}

var errNothingToRollBack = &deploy.RequestError{Reason: "no successful deployment before the one serving now"}
