package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/testlog"
	"github.com/keystone-app/keystone/internal/webhook"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var testSecret = []byte("keystone-test-webhook-secret")

type testBundle struct {
	router http.Handler
	store  *store.Store
	dbURL  string
}

// setup serves the webhook handler with a real Intake on a fresh database.
func setup(t *testing.T) *testBundle {
	t.Helper()
	dbURL := storetest.Fresh(t)
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return &testBundle{router: newRouter(t, st), store: st, dbURL: dbURL}
}

func newRouter(t testing.TB, st *store.Store) http.Handler {
	t.Helper()
	return newRouterLogging(t, st, discardLogger())
}

// newRouterLogging is newRouter with the handler logging to logger.
func newRouterLogging(t testing.TB, st *store.Store, logger *slog.Logger) http.Handler {
	t.Helper()
	jobs, err := queue.NewClient(st.Pool(), nil, queue.Config{DeployWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	intake := queue.NewIntake(st, jobs)
	t.Cleanup(intake.Close)
	h, err := webhook.NewHandler(webhook.Config{Secret: testSecret}, intake, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/webhooks/github", h.Handle)
	return r
}

// deliver posts body as event with a valid signature (unless sig overrides it).
func (b *testBundle) deliver(t *testing.T, event, guid string, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(testSecret, body))
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	b.router.ServeHTTP(rec, req)
	return rec
}

func (b *testBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.store.Pool().QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "github-webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withComment returns the issue_comment fixture with its body replaced.
func withComment(t *testing.T, body string) []byte {
	t.Helper()
	var payload map[string]any
	if err := json.Unmarshal(fixture(t, "issue_comment/created.with-installation.payload.json"), &payload); err != nil {
		t.Fatal(err)
	}
	payload["comment"].(map[string]any)["body"] = body
	out, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryFixtureIsRouted sends every payload of the testdata folder and
// checks the answer, the stored delivery and the enqueued job.
func TestEveryFixtureIsRouted(t *testing.T) {
	b := setup(t)
	cases := []struct {
		file, event string
		code        int
		status      string
		jobKind     string // "" for no job
	}{
		{"installation/created.payload.json", "installation", 202, "accepted", ""},
		{"installation/deleted.payload.json", "installation", 202, "accepted", ""},
		{"installation_repositories/added.payload.json", "installation_repositories", 202, "accepted", ""},
		{"installation_repositories/removed.payload.json", "installation_repositories", 202, "accepted", ""},
		{"issue_comment/created.payload.json", "issue_comment", 200, "ignored", ""},
		{"issue_comment/created.with-installation.payload.json", "issue_comment", 200, "ignored", ""},
		{"issue_comment/created.with-organization.payload.json", "issue_comment", 200, "ignored", ""},
		{"issue_comment/deleted.payload.json", "issue_comment", 200, "ignored", ""},
		{"issue_comment/edited.payload.json", "issue_comment", 200, "ignored", ""},
		{"ping/payload.json", "ping", 200, "ignored", ""},
		{"ping/with-app_id.payload.json", "ping", 200, "ignored", ""},
		{"pull_request/closed.payload.json", "pull_request", 202, "accepted", "pull_request"},
		{"pull_request/opened.payload.json", "pull_request", 202, "accepted", "pull_request"},
		{"push/payload.json", "push", 200, "ignored", ""},
		{"push/with-installation.payload.json", "push", 200, "ignored", ""},
		{"push/with-new-branch.payload.json", "push", 202, "accepted", "push"},
		{"push/with-no-username-committer.payload.json", "push", 202, "accepted", "push"},
		{"push/with-organization.payload.json", "push", 200, "ignored", ""},
	}
	entries, err := filepath.Glob("testdata/github-webhooks/*/*.json")
	if err != nil || len(entries) != len(cases) {
		t.Fatalf("the table must cover every fixture: %d files, %d cases (%v)", len(entries), len(cases), err)
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			guid := "fixture-" + strings.NewReplacer("/", "-", ".", "-").Replace(c.file)
			rec := b.deliver(t, c.event, guid, fixture(t, c.file), nil)
			var ans struct{ Status, Delivery string }
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
				t.Fatalf("answer is not JSON: %q", rec.Body)
			}
			if rec.Code != c.code || ans.Status != c.status {
				t.Fatalf("got %d %s, want %d %s: %s", rec.Code, ans.Status, c.code, c.status, rec.Body)
			}
			stored := b.count(t, `SELECT count(*) FROM webhook_deliveries WHERE guid = $1`, guid)
			if want := map[bool]int{true: 1, false: 0}[c.code == 202]; stored != want {
				t.Fatalf("stored deliveries = %d, want %d", stored, want)
			}
			jobs := b.count(t, `SELECT count(*) FROM river_job j JOIN webhook_deliveries d
				ON (j.args->>'delivery_id')::bigint = d.id WHERE d.guid = $1 AND j.kind = $2`, guid, c.jobKind)
			if want := map[bool]int{true: 1, false: 0}[c.jobKind != ""]; jobs != want {
				t.Fatalf("%s jobs = %d, want %d", c.jobKind, jobs, want)
			}
		})
	}
}

func TestCommentWithCommandIsStoredWithJob(t *testing.T) {
	b := setup(t)
	rec := b.deliver(t, "issue_comment", "comment-1", withComment(t, "LGTM\n  /Keystone rollback web"), nil)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("got %d: %s", rec.Code, rec.Body)
	}
	if n := b.count(t, `SELECT count(*) FROM river_job WHERE kind = 'issue_comment'`); n != 1 {
		t.Fatalf("issue_comment jobs = %d, want 1", n)
	}
}

func TestInstallationEventsKeepRepositoriesCurrent(t *testing.T) {
	b := setup(t)
	for i, f := range []string{"installation/created.payload.json", "installation_repositories/added.payload.json"} {
		event := strings.Split(f, "/")[0]
		if rec := b.deliver(t, event, "inst-"+string(rune('a'+i)), fixture(t, f), nil); rec.Code != 202 {
			t.Fatalf("%s: %d %s", f, rec.Code, rec.Body)
		}
	}
	repos, err := b.store.InstallationRepositories(t.Context(), 957387)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range repos {
		names = append(names, r.FullName)
	}
	if got := strings.Join(names, ","); got != "Codertocat/Hello-World,Codertocat/Space" {
		t.Fatalf("repositories = %q", got)
	}
	var deleted map[string]any
	if err := json.Unmarshal(fixture(t, "installation/deleted.payload.json"), &deleted); err != nil {
		t.Fatal(err)
	}
	deleted["installation"].(map[string]any)["id"] = 957387 // the fixture deletes another installation
	body, err := json.Marshal(deleted)
	if err != nil {
		t.Fatal(err)
	}
	if rec := b.deliver(t, "installation", "inst-deleted", body, nil); rec.Code != 202 {
		t.Fatalf("deleted: %d %s", rec.Code, rec.Body)
	}
	in, err := b.store.Installation(t.Context(), 957387)
	if err != nil || !in.Deleted {
		t.Fatalf("installation after deleted event = %+v, %v", in, err)
	}
	if repos, _ := b.store.InstallationRepositories(t.Context(), 957387); len(repos) != 0 {
		t.Fatalf("repositories of a deleted installation = %v", repos)
	}
}

func TestSignature(t *testing.T) {
	b := setup(t)
	body := fixture(t, "push/with-new-branch.payload.json")
	cases := []struct {
		name    string
		headers map[string]string
		code    int
	}{
		{"missing", map[string]string{"X-Hub-Signature-256": ""}, 401},
		{"wrong", map[string]string{"X-Hub-Signature-256": webhook.Sign([]byte("other secret"), body)}, 401},
		{"malformed", map[string]string{"X-Hub-Signature-256": "sha256=zz"}, 401},
		{"sha1 only", map[string]string{"X-Hub-Signature-256": "", "X-Hub-Signature": "sha1=" + strings.Repeat("0", 40)}, 401},
		{"right", nil, 202},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			guid := "sig-" + strings.ReplaceAll(c.name, " ", "-")
			rec := b.deliver(t, "push", guid, body, c.headers)
			if rec.Code != c.code {
				t.Fatalf("got %d, want %d: %s", rec.Code, c.code, rec.Body)
			}
			want := map[bool]int{true: 1, false: 0}[c.code == 202]
			if n := b.count(t, `SELECT count(*) FROM webhook_deliveries WHERE guid = $1`, guid); n != want {
				t.Fatalf("stored = %d, want %d", n, want)
			}
		})
	}
}

// TestGitHubSignatureVector is the example GitHub publishes for validating
// webhook deliveries.
func TestGitHubSignatureVector(t *testing.T) {
	got := webhook.Sign([]byte("It's a Secret to Everybody"), []byte("Hello, World!"))
	if want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

// TestBadRequests: each malformed request is refused, stores nothing and
// leaves a warning naming its delivery id in the log (an operator asked
// why GitHub shows a failed delivery must find it).
func TestBadRequests(t *testing.T) {
	b := setup(t)
	var logs testlog.Buffer
	b.router = newRouterLogging(t, b.store, slog.New(slog.NewJSONHandler(&logs, nil)))
	push := fixture(t, "push/with-new-branch.payload.json")
	cases := []struct {
		name, event, guid string
		body              []byte
		code              int
	}{
		{"not JSON", "push", "bad-1", []byte("{not json"), 400},
		{"JSON of another shape", "push", "bad-2", []byte(`{"ref": 42}`), 400},
		{"no event header", "", "bad-3", push, 400},
		{"no delivery id", "push", "", push, 400},
		{"delivery id with spaces", "push", "a b", push, 400},
		{"unknown event", "made_up_event", "bad-4", []byte(`{}`), 200},
		{"push without clone_url", "push", "bad-5", []byte(`{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) +
			`","repository":{"full_name":"o/r"},"installation":{"id":1}}`), 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := b.deliver(t, c.event, c.guid, c.body, map[string]string{"X-GitHub-Event": c.event, "X-GitHub-Delivery": c.guid})
			if rec.Code != c.code {
				t.Fatalf("got %d, want %d: %s", rec.Code, c.code, rec.Body)
			}
			if c.code >= 400 && !loggedRefusal(logs.String(), c.guid) {
				t.Errorf("refused with %d but no warning with delivery_id %q logged:\n%s", c.code, c.guid, logs.String())
			}
		})
	}
	if n := b.count(t, `SELECT count(*) FROM webhook_deliveries`); n != 0 {
		t.Fatalf("bad requests stored %d deliveries", n)
	}
}

func TestBodyOver25MiB(t *testing.T) {
	b := setup(t)
	body := bytes.Repeat([]byte(" "), webhook.MaxBodyBytes+1)
	rec := b.deliver(t, "push", "too-big", body, nil)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", rec.Code)
	}
}

func TestDuplicateDeliveryAddsNoWork(t *testing.T) {
	b := setup(t)
	body := fixture(t, "push/with-new-branch.payload.json")
	if rec := b.deliver(t, "push", "dup-1", body, nil); rec.Code != 202 {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	rec := b.deliver(t, "push", "dup-1", body, nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"duplicate"`) {
		t.Fatalf("repeat: %d %s", rec.Code, rec.Body)
	}
	if n := b.count(t, `SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("jobs = %d, want 1", n)
	}
}

// TestConcurrentIdenticalDeliveriesYieldOneJob races the same delivery from
// many senders: the UNIQUE guid must let exactly one through.
func TestConcurrentIdenticalDeliveriesYieldOneJob(t *testing.T) {
	b := setup(t)
	body := fixture(t, "push/with-new-branch.payload.json")
	const senders = 16
	codes := make([]int, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() { codes[i] = b.deliver(t, "push", "race-1", body, nil).Code })
	}
	wg.Wait()
	accepted := 0
	for _, c := range codes {
		switch c {
		case 202:
			accepted++
		case 200:
		default:
			t.Fatalf("unexpected answer %d", c)
		}
	}
	if accepted != 1 {
		t.Fatalf("%d senders got 202, want exactly 1 (%v)", accepted, codes)
	}
	if n := b.count(t, `SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("jobs = %d, want 1", n)
	}
}

// TestDatabaseDownAnswers503 closes the pool under the handler.
func TestDatabaseDownAnswers503(t *testing.T) {
	dbURL := storetest.Fresh(t)
	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{router: newRouter(t, st), store: st}
	st.Close()
	rec := b.deliver(t, "push", "down-1", fixture(t, "push/with-new-branch.payload.json"), nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503: %s", rec.Code, rec.Body)
	}
}

// jobArgs reads the args of the only job, to check what a push enqueued.
func jobArgs(t *testing.T, st *store.Store) map[string]any {
	t.Helper()
	var raw []byte
	if err := st.Pool().QueryRow(t.Context(), `SELECT args FROM river_job`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPushJobPointsAtStoredDelivery(t *testing.T) {
	b := setup(t)
	body := fixture(t, "push/with-new-branch.payload.json")
	if rec := b.deliver(t, "push", "args-1", body, nil); rec.Code != 202 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	id := int64(jobArgs(t, b.store)["delivery_id"].(float64))
	d, err := b.store.Delivery(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.GUID != "args-1" || d.Repository != "Codertocat/Hello-World" || d.InstallationID != 1 || !bytes.Equal(d.Payload, body) {
		t.Fatalf("stored delivery = %+v", d)
	}
}

func TestInstallationSuspendAndUnsuspend(t *testing.T) {
	b := setup(t)
	body := func(action, suspendedAt string) []byte {
		return []byte(`{"action":"` + action + `","installation":{"id":4242,"account":{"login":"acme","type":"Organization"},` +
			`"suspended_at":` + suspendedAt + `},"repositories":[]}`)
	}
	cases := []struct {
		action, suspendedAt string
		suspended           bool
	}{
		{"created", "null", false},
		{"suspend", `"2026-11-20T10:00:00Z"`, true},
		{"unsuspend", "null", false},
	}
	for i, c := range cases {
		if rec := b.deliver(t, "installation", fmt.Sprintf("susp-%d", i), body(c.action, c.suspendedAt), nil); rec.Code != 202 {
			t.Fatalf("%s: %d %s", c.action, rec.Code, rec.Body)
		}
		in, err := b.store.Installation(t.Context(), 4242)
		if err != nil || in.Suspended != c.suspended || in.AccountLogin != "acme" {
			t.Fatalf("after %s: %+v, %v (want suspended=%v)", c.action, in, err, c.suspended)
		}
	}
}

// TestPushWithAForeignCloneURLIsRefused: a validly signed push whose
// repository.clone_url is not the repository's URL on GitHub (the host of
// KEYSTONE_GITHUB_WEB_URL) would have Keystone send the installation token
// to that host. It is refused and nothing is stored (issue 12 item 8).
// TestForeignCloneURLIsRefused: Keystone fetches a push's commit, and a
// pull request's preview, from repository.clone_url with the installation's
// token, so a clone_url outside KEYSTONE_GITHUB_WEB_URL's repository is
// refused before anything is stored.
func TestForeignCloneURLIsRefused(t *testing.T) {
	b := setup(t)
	for _, event := range []struct{ name, fixture string }{
		{"push", "push/with-new-branch.payload.json"},
		{"pull_request", "pull_request/opened.payload.json"},
	} {
		for i, url := range []string{
			"https://evil.example/Codertocat/Hello-World.git",
			"https://github.com.evil.example/Codertocat/Hello-World.git",
			"https://github.com/Codertocat/Other.git",
			"http://github.com/Codertocat/Hello-World.git",
			"https://token@github.com/Codertocat/Hello-World.git",
			"https://github.com/Codertocat/Hello-World.git/../../evil/x.git",
			"",
		} {
			body := withCloneURL(t, fixture(t, event.fixture), url)
			guid := fmt.Sprintf("%s-foreign-%d", event.name, i)
			rec := b.deliver(t, event.name, guid, body, nil)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "clone_url") {
				t.Errorf("%s clone_url %q: got %d %s, want 400 naming clone_url", event.name, url, rec.Code, rec.Body)
			}
			if n := b.count(t, `SELECT count(*) FROM webhook_deliveries WHERE guid = $1`, guid); n != 0 {
				t.Errorf("%s clone_url %q: delivery stored", event.name, url)
			}
		}
		for i, url := range []string{"https://github.com/Codertocat/Hello-World.git", "https://github.com/codertocat/hello-world"} {
			rec := b.deliver(t, event.name, fmt.Sprintf("%s-own-%d", event.name, i), withCloneURL(t, fixture(t, event.fixture), url), nil)
			if rec.Code != http.StatusAccepted {
				t.Errorf("%s clone_url %s: got %d %s, want 202", event.name, url, rec.Code, rec.Body)
			}
		}
	}
}

func withCloneURL(t *testing.T, body []byte, url string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m["repository"].(map[string]any)["clone_url"] = url
	m["after"] = fmt.Sprintf("%040x", len(url)+1) // a distinct push each time, never all zeros
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// loggedRefusal reports whether log (JSON lines) has a warning refusing
// delivery guid.
func loggedRefusal(log, guid string) bool {
	for _, line := range strings.Split(log, "\n") {
		var l struct {
			Level, Msg string
			Delivery   string `json:"delivery_id"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "WARN" && l.Delivery == guid &&
			strings.HasPrefix(l.Msg, "webhook refused") {
			return true
		}
	}
	return false
}
