package e2e_test

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/keystonetest"
)

// world is the real binary with the deploy engine, real Docker and git, and
// the fake GitHub, for end-to-end tests of the conversation.
type world struct {
	*deploytest.Env
	hooks *hooks
	env   map[string]string
	ks    *keystonetest.Process
}

const (
	e2eRepo = "octo/web"
	e2ePR   = 5
)

func newWorld(t *testing.T) *world {
	t.Helper()
	e := deploytest.New(t, "web")
	e.GitHub.SetPermission(e2eRepo, "alice", "write")
	e.GitHub.SetPermission(e2eRepo, "bob", "read")
	env := keystoneEnv(t, e.DBURL, e.GitHub)
	env["KEYSTONE_PORT_RANGE"] = e.PortRange.String()
	env["KEYSTONE_APP_HOST"] = "127.0.0.1"
	env["KEYSTONE_GITHUB_WEB_URL"] = e.Git.URL // pushes' clone_url must be under it
	return &world{Env: e, hooks: newHooks(t, e.GitHub), env: env}
}

func (w *world) start(t *testing.T) {
	t.Helper()
	ks := keystonetest.Start(t, w.env)
	w.ks = ks
	w.hooks.setURL(ks.URL)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Keystone's last log lines:\n%s", lastLines(ks.Output(), 60))
		}
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// push commits the test app answering version on main, in pull request
// e2ePR, and delivers the push; it returns the SHA.
func (w *world) push(t *testing.T, b gittest.Behaviour) string {
	t.Helper()
	files := gittest.AppFiles(t, "", b)
	maps.Copy(files, map[string][]byte{".keystone.yml": gittest.KeystoneYML("web", "main")})
	sha := w.Repo.Commit(t, "main", files, "version "+b.Version)
	w.GitHub.SetPullsForCommit(e2eRepo, sha, e2ePR)
	w.hooks.deliver("push", w.Repo.PushEvent("main", sha, "alice"))
	return sha
}

// finalStatus waits for sha's keystone/web status to leave pending.
func (w *world) finalStatus(t *testing.T, sha string, timeout time.Duration) githubtest.Status {
	t.Helper()
	var last githubtest.Status
	await(t, timeout, "a final status of "+sha[:7], func() bool {
		sts := w.GitHub.Statuses(e2eRepo, sha)
		if len(sts) == 0 {
			return false
		}
		last = sts[len(sts)-1]
		return last.State != "pending"
	})
	return last
}

// command posts a comment on the pull request and delivers it.
func (w *world) command(t *testing.T, user, body string) githubtest.Comment {
	t.Helper()
	c := w.GitHub.AddComment(e2eRepo, e2ePR, user, body)
	if _, code := w.hooks.deliver("issue_comment", c.Event(e2eRepo, deploytest.Installation)); code != http.StatusAccepted {
		t.Fatalf("comment delivery answered %d", code)
	}
	return c
}

var deployedRE = regexp.MustCompile(`^Deployed in [0-9.]+s · healthy \(GET /healthz 200\)$`)

// pendingSteps are the pending descriptions of a first deploy or update.
func pendingSteps(sha string) []string {
	s := sha[:7]
	return []string{"pending Queued", "pending Fetching " + s, "pending Building " + s, "pending Starting " + s,
		"pending Checking health"}
}

// TestConversationEndToEnd drives the real binary through a push deploy, a
// failed one, commands (rollback, denied, lock, a fork's SHA, unlock,
// status) and a locked push, and checks everything GitHub shows.
func TestConversationEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.start(t)

	v1 := w.push(t, gittest.Behaviour{Version: "1"})
	if st := w.finalStatus(t, v1, 5*time.Minute); st.State != "success" || !deployedRE.MatchString(st.Description) {
		t.Fatalf("final status of v1 = %+v", st)
	}
	var got []string
	for _, s := range w.GitHub.Statuses(e2eRepo, v1) {
		got = append(got, s.State+" "+s.Description)
		if s.Context != "keystone/web" || !strings.HasPrefix(s.TargetURL, "http://keystone.test:8080/deployments/") {
			t.Errorf("status context %q target %q", s.Context, s.TargetURL)
		}
	}
	if want := pendingSteps(v1); fmt.Sprint(got[:len(got)-1]) != fmt.Sprint(want) {
		t.Errorf("statuses of v1 = %q\nwant %q then success", got, want)
	}
	port := w.App(t, "web").HostPort
	await(t, 30*time.Second, "the PR comment of v1", func() bool {
		c := botReplies(w.GitHub, e2eRepo, e2ePR)
		return len(c) == 1 && strings.Contains(c[0].Body, "✅ Deployed **web** at `"+v1[:7]+"`")
	})
	pr := botReplies(w.GitHub, e2eRepo, e2ePR)[0]
	for _, part := range []string{fmt.Sprintf("http://127.0.0.1:%d/", port), "healthy: GET /healthz answered 200",
		"| **Logs** | http://keystone.test:8080/deployments/"} {
		if !strings.Contains(pr.Body, part) {
			t.Errorf("PR comment lacks %q:\n%s", part, pr.Body)
		}
	}

	v2 := w.push(t, gittest.Behaviour{Version: "2", Health: 500})
	if st := w.finalStatus(t, v2, 5*time.Minute); st.State != "failure" ||
		!strings.HasPrefix(st.Description, "Health check failed: GET /healthz 500") ||
		!strings.Contains(st.Description, v1[:7]+" still serving") {
		t.Fatalf("final status of v2 = %+v", st)
	}
	await(t, 30*time.Second, "the PR comment edited for v2", func() bool {
		c := botReplies(w.GitHub, e2eRepo, e2ePR)
		return len(c) == 1 && c[0].ID == pr.ID && strings.Contains(c[0].Body, "❌ Deploy of **web** at `"+v2[:7]+"` failed")
	})
	v3 := w.push(t, gittest.Behaviour{Version: "3"})
	if st := w.finalStatus(t, v3, 5*time.Minute); st.State != "success" {
		t.Fatalf("final status of v3 = %+v", st)
	}

	rb := w.command(t, "alice", "/keystone rollback")
	body := w.Reply(t, rb, "✅ Rolled back **web** to `"+v1[:7]+"`", 3*time.Minute)
	for _, part := range []string{fmt.Sprintf("http://127.0.0.1:%d/", port), "healthy: GET /healthz answered 200", "/deployments/"} {
		if !strings.Contains(body, part) {
			t.Errorf("rollback reply lacks %q:\n%s", part, body)
		}
	}
	if !deploytest.Serves(port, "1") {
		t.Errorf("after the rollback the app does not serve version 1")
	}
	if re := w.GitHub.Reactions(e2eRepo, rb.ID); len(re) != 1 || re[0].Content != "eyes" {
		t.Errorf("reactions to the rollback = %+v", re)
	}

	denied := w.command(t, "bob", "/keystone rollback to "+v3[:7])
	w.Reply(t, denied, "needs write, maintain or admin access", time.Minute)

	fork := w.Repo.CommitToRef(t, "main", "refs/pull/9/head", gittest.AppFiles(t, "", gittest.Behaviour{Version: "fork"}), "fork")
	forked := w.command(t, "alice", "/keystone deploy web "+fork)
	w.Reply(t, forked, "branch of octo/web", 2*time.Minute) // "is not a commit on a branch of", "is on no branch of"

	lock := w.command(t, "alice", "/keystone lock web release freeze")
	w.Reply(t, lock, "🔒 **web** is locked by @alice: release freeze.", time.Minute)
	v4 := w.push(t, gittest.Behaviour{Version: "4"})
	if st := w.finalStatus(t, v4, 2*time.Minute); st.State != "error" || st.Description != "Not deployed: web is locked by @alice (release freeze)" {
		t.Fatalf("status of a push while locked = %+v", st)
	}
	unlock := w.command(t, "alice", "/keystone unlock")
	w.Reply(t, unlock, "🔓 **web** is unlocked", time.Minute)
	status := w.command(t, "alice", "/keystone status web")
	w.Reply(t, status, "[`"+v1[:7]+"`]", time.Minute)

	if !deploytest.Serves(port, "1") {
		t.Errorf("the app no longer serves version 1: a refused or locked request deployed something")
	}
	for _, sha := range []string{v1, v2, v3, v4} {
		seen := map[string]bool{}
		for _, s := range w.GitHub.Statuses(e2eRepo, sha) {
			k := s.State + s.Description + s.TargetURL
			if seen[k] {
				t.Errorf("status %q of %s posted twice", s.Description, sha[:7])
			}
			seen[k] = true
		}
	}
}

// TestPushDuringGitHubOutage: GitHub answers 500 to the first repository
// calls while a push deploys, then rate-limits; Keystone waits as its
// production defaults say (at least a minute after a failure) and every
// status and the PR comment still arrive exactly once and in order.
func TestPushDuringGitHubOutage(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" { // CI never skips it
		t.Skip("an outage and minute-long backoffs")
	}
	t.Parallel()
	w := newWorld(t)
	w.start(t)
	// The outage lasts for the first requests, not for a wall-clock span: on a
	// loaded machine the push may reach GitHub after any fixed span ended,
	// and the faults would meet nothing.
	w.GitHub.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 500, Times: 4})
	w.GitHub.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 429, RetryAfter: 5 * time.Second, Times: 1})
	w.GitHub.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 403, Times: 1})
	v1 := w.push(t, gittest.Behaviour{Version: "1"})
	st := w.finalStatus(t, v1, 4*time.Minute)
	if st.State != "success" {
		t.Fatalf("final status %+v", st)
	}
	var got []string
	for _, s := range w.GitHub.Statuses(e2eRepo, v1) {
		got = append(got, s.State+" "+s.Description)
	}
	if want := pendingSteps(v1); fmt.Sprint(got[:len(got)-1]) != fmt.Sprint(want) {
		t.Errorf("statuses = %q\nwant %q then success", got, want)
	}
	await(t, 3*time.Minute, "the PR comment", func() bool {
		c := botReplies(w.GitHub, e2eRepo, e2ePR)
		return len(c) == 1 && strings.Contains(c[0].Body, "✅ Deployed")
	})
	if n := len(w.GitHub.RequestsTo("POST", "/repos/octo/web/issues/5/comments")); n != 1 {
		t.Errorf("PR comment posted %d times, want 1", n)
	}
	limited := 0
	for _, r := range w.GitHub.Requests() {
		if r.Status == http.StatusTooManyRequests || (r.Status == http.StatusForbidden && strings.HasPrefix(r.Path, "/repos/")) {
			limited++
		}
	}
	if limited != 2 || countStatus500(w.GitHub) == 0 {
		t.Errorf("%d rate-limited answers and %d 500s: the faults did not meet the conversation", limited, countStatus500(w.GitHub))
	}
}

func countStatus500(s *githubtest.Server) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Status == http.StatusInternalServerError {
			n++
		}
	}
	return n
}

// TestMissedPushIsRedeliveredAndDeployed: a push delivered while Keystone
// is down is found among the App's failed deliveries at start-up, asked
// for again, and deployed.
func TestMissedPushIsRedeliveredAndDeployed(t *testing.T) {
	w := newWorld(t)
	w.hooks.setURL("http://127.0.0.1:1") // nothing listens: GitHub logs a failure
	v1 := w.push(t, gittest.Behaviour{Version: "1"})
	if d := w.GitHub.Deliveries(); len(d) != 1 || d[0].StatusCode/100 == 2 {
		t.Fatalf("deliveries while down = %+v, want one failed", d)
	}
	w.start(t)
	if st := w.finalStatus(t, v1, 5*time.Minute); st.State != "success" {
		t.Fatalf("final status of the missed push = %+v", st)
	}
	if r := w.GitHub.Redelivered(); len(r) != 1 {
		t.Errorf("%d redeliveries, want 1", len(r))
	}
	if !deploytest.Serves(w.App(t, "web").HostPort, "1") {
		t.Errorf("the missed push is not serving")
	}
}
