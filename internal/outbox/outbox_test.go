package outbox_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/testwait"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const (
	inst     = 42
	fullRepo = "acme/web"
	shaA     = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB     = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

var target = outbox.Target{InstallationID: inst, Owner: "acme", Repo: "web"}

// env is one test's database, fake GitHub and client.
type env struct {
	st  *store.Store
	gh  *githubtest.Server
	app *github.App
}

func newEnv(t *testing.T, edit ...func(*github.Config)) *env {
	t.Helper()
	return newEnvTB(t, edit...)
}

func newEnvTB(t testing.TB, edit ...func(*github.Config)) *env {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	srv := githubtest.New(t)
	srv.AddInstallation(inst, "acme", "web")
	return &env{st: st, gh: srv, app: newClient(t, srv, edit...)}
}

// newClient is a GitHub client with short inline waits: longer ones GitHub
// asks for are handed to the outbox.
func newClient(t testing.TB, srv *githubtest.Server, edit ...func(*github.Config)) *github.App {
	t.Helper()
	cfg := github.Config{AppID: srv.AppID, PrivateKeyPEM: srv.PrivateKeyPEM, APIURL: srv.URL,
		MaxAttempts: 2, MaxWait: 500 * time.Millisecond, RetryWaitMin: 10 * time.Millisecond,
		RetryWaitMax: 50 * time.Millisecond, RateLimitWait: 2 * time.Second, RequestTimeout: 2 * time.Second}
	for _, e := range edit {
		e(&cfg)
	}
	app, err := github.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// tx runs fn in a committed transaction, as the caller of Enqueue* would.
func (e *env) tx(t *testing.T, fn func(q *store.Queries) error) {
	t.Helper()
	if err := e.st.InTx(t.Context(), func(_ pgx.Tx, q *store.Queries) error { return fn(q) }); err != nil {
		t.Fatal(err)
	}
}

func status(sha, state, desc string) outbox.Status {
	return outbox.Status{SHA: sha, State: state, Description: desc, Context: "keystone/web",
		TargetURL: "https://keystone.example/deployments/7"}
}

// deploySteps are the statuses of one deployment's life.
var deploySteps = []struct{ state, desc string }{
	{"pending", "Queued"}, {"pending", "Fetching aaaaaaa"}, {"pending", "Building aaaaaaa"},
	{"pending", "Starting aaaaaaa"}, {"pending", "Checking health"}, {"success", "Deployed in 3.1s · healthy"},
}

func descriptions(sts []githubtest.Status) []string {
	var out []string
	for _, s := range sts {
		out = append(out, s.State+" "+s.Description)
	}
	return out
}

func wantDescriptions() []string {
	var out []string
	for _, s := range deploySteps {
		out = append(out, s.state+" "+s.desc)
	}
	return out
}

// waitFor polls cond until it holds or timeout passes (testwait).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, timeout, what, func() (bool, error) { return cond(), nil })
}

func TestDeliversStatusesCommentsAndReactionsInOrder(t *testing.T) {
	e := newEnv(t)
	user := e.gh.AddComment(fullRepo, 5, "alice", "/keystone deploy")
	th := outbox.Thread{Issue: 5, Key: "reply:1"}
	e.tx(t, func(q *store.Queries) error {
		if _, err := outbox.EnqueueReaction(t.Context(), q, target, user.ID, "eyes"); err != nil {
			return err
		}
		_, err := outbox.EnqueueComment(t.Context(), q, target, th, "Deploying…")
		return err
	})
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	for i, s := range deploySteps {
		e.tx(t, func(q *store.Queries) error {
			if _, err := outbox.EnqueueStatus(t.Context(), q, target, status(shaA, s.state, s.desc)); err != nil {
				return err
			}
			_, err := outbox.EnqueueComment(t.Context(), q, target, th, fmt.Sprintf("step %d: %s", i, s.desc))
			return err
		})
	}
	outboxtest.WaitIdle(t, e.st, 20*time.Second)

	if got := descriptions(e.gh.Statuses(fullRepo, shaA)); fmt.Sprint(got) != fmt.Sprint(wantDescriptions()) {
		t.Errorf("statuses = %q\nwant       %q", got, wantDescriptions())
	}
	comments := e.gh.Comments(fullRepo, 5)
	if len(comments) != 2 {
		t.Fatalf("%d comments on #5, want the user's and one reply", len(comments))
	}
	reply := comments[1]
	if !strings.HasPrefix(reply.Body, "step 5: Deployed") || !strings.Contains(reply.Body, th.Marker()) {
		t.Errorf("reply = %q, want the last step with the marker", reply.Body)
	}
	if r := e.gh.Reactions(fullRepo, user.ID); len(r) != 1 || r[0].Content != "eyes" {
		t.Errorf("reactions = %+v, want one eyes", r)
	}
	first := e.gh.RequestsTo("", "/repos/")[0]
	if first.Method != "POST" || !strings.Contains(first.Path, "/reactions") {
		t.Errorf("first call %s %s, want the reaction (it was queued first)", first.Method, first.Path)
	}
}

func TestEnqueueKeepsOnlyChangesAndCutsSafely(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("é", 100) + strings.Repeat("🚀", 100) // 200 runes, 600 bytes
	e.tx(t, func(q *store.Queries) error {
		ctx := t.Context()
		for i, s := range []outbox.Status{status(shaA, "pending", "Queued"), status(shaA, "pending", "Queued"),
			status(shaA, "failure", long)} {
			queued, err := outbox.EnqueueStatus(ctx, q, target, s)
			if err != nil {
				return err
			}
			if want := i != 1; queued != want {
				t.Errorf("status %d queued = %v, want %v", i, queued, want)
			}
		}
		th := outbox.Thread{Issue: 3, Key: "reply:9"}
		if _, err := outbox.EnqueueComment(ctx, q, target, th, strings.Repeat("ß", github.MaxCommentBody+500)); err != nil {
			return err
		}
		for _, bad := range []outbox.Status{status("abc", "pending", "x"), status(shaA, "running", "x")} {
			if _, err := outbox.EnqueueStatus(ctx, q, target, bad); err == nil {
				t.Errorf("EnqueueStatus(%+v) accepted", bad)
			}
		}
		if _, err := outbox.EnqueueComment(ctx, q, target, outbox.Thread{Key: "x"}, "body"); err == nil {
			t.Error("comment without issue or commit accepted")
		}
		if _, err := outbox.EnqueueComment(ctx, q, target, outbox.Thread{Issue: 1, Key: "bad --> key"}, "body"); err == nil {
			t.Error("thread key able to close the marker accepted")
		}
		return nil
	})
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if got := outboxtest.States(t, e.st); fmt.Sprint(got) != "[sent sent sent]" {
		t.Fatalf("entry states = %v, want three sent (no 422 from GitHub)", got)
	}
	sts := e.gh.Statuses(fullRepo, shaA)
	d := sts[len(sts)-1].Description
	if n := utf8.RuneCountInString(d); n != 140 || !strings.HasSuffix(d, "…") || !utf8.ValidString(d) {
		t.Errorf("cut description has %d runes, valid %v: %q", n, utf8.ValidString(d), d)
	}
	body := e.gh.Comments(fullRepo, 3)[0].Body
	if n := utf8.RuneCountInString(body); n > github.MaxCommentBody || !strings.Contains(body, "<!-- keystone:thread=reply:9 -->") {
		t.Errorf("cut comment has %d runes (max %d), marker kept: %v", n, github.MaxCommentBody, strings.Contains(body, "keystone:thread"))
	}
}

func TestCut(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 140, "short"},
		{"abcdef", 4, "abc…"},
		{"ééééé", 3, "éé…"},
		{"ab \n cd", 5, "ab…"},
		{"a\x00b", 5, "ab"},
		{"\xff\xfeok", 10, "\uFFFDok"},
		{"x", 0, ""},
	}
	for _, tt := range tests {
		if got := outbox.Cut(tt.in, tt.max); got != tt.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}
