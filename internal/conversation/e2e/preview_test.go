package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/keystonetest"
)

// keystoneCLI runs the keystone binary against the world's database.
func (w *world) keystoneCLI(t *testing.T, stdin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, keystonetest.Binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SUDO_USER=tester",
		"DATABASE_URL=" + w.DBURL, "KEYSTONE_ENCRYPTION_KEYS=" + w.env["KEYSTONE_ENCRYPTION_KEYS"]}
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("keystone %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// statusOf waits for the last status of sha in context to leave pending.
func (w *world) statusOf(t *testing.T, sha, check string, timeout time.Duration) string {
	t.Helper()
	var last string
	await(t, timeout, check+" status of "+sha[:7], func() bool {
		for _, s := range w.GitHub.Statuses(e2eRepo, sha) {
			if s.Context == check {
				last = s.State + " " + s.Description
			}
		}
		return last != "" && !strings.HasPrefix(last, "pending")
	})
	return last
}

// TestPreviewPerPullRequest runs the real binary, Docker and git: a pull
// request from a branch gets its own instance answering the head's version
// while production answers main's, with the preview secret and never the
// production one (the app prints what its environment holds); a push to
// the pull request moves it; a fork's pull request is not built; beyond
// KEYSTONE_MAX_PREVIEWS a preview is refused with an error status; closing
// removes container, image and port and makes its GitHub deployment
// inactive.
func TestPreviewPerPullRequest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.env["KEYSTONE_ENCRYPTION_KEYS"] = "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	w.env["KEYSTONE_MAX_PREVIEWS"] = "1"
	w.env["KEYSTONE_PREVIEW_SWEEP_SECONDS"] = "1"
	w.keystoneCLI(t, "production-only-value\n", "secret", "set", e2eRepo, "web", "PROD_SECRET")
	w.keystoneCLI(t, "preview-value\n", "secret", "set", "--preview", e2eRepo, "web", "PREVIEW_SECRET")
	w.start(t)
	files := func(version string) map[string][]byte {
		f := gittest.AppFiles(t, "", gittest.Behaviour{Version: version})
		maps.Copy(f, map[string][]byte{".keystone.yml": gittest.KeystoneYML("web", "main", "preview: true")})
		return f
	}
	v1 := w.Repo.Commit(t, "main", files("1"), "v1")
	w.hooks.deliver("push", w.Repo.PushEvent("main", v1, "alice"))
	st := w.statusOf(t, v1, "keystone/web", 5*time.Minute)
	if !strings.HasPrefix(st, "success") {
		t.Fatalf("production v1: %s", st)
	}
	t.Logf("production: %s", st)
	prod := w.App(t, "web").HostPort

	const pr = 7
	repoID := w.GitHub.RepositoryID(e2eRepo)
	p1 := w.Repo.Commit(t, "feature", files("pr-1"), "pr v1")
	w.GitHub.SetPullRequest(e2eRepo, githubtest.PullRequest{Number: pr, State: "open", HeadRef: "feature", HeadSHA: p1, HeadRepoID: repoID})
	if _, code := w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("opened", pr, "feature", p1, repoID)); code != http.StatusAccepted {
		t.Fatalf("pull_request delivery answered %d", code)
	}
	check := fmt.Sprintf("keystone/web-pr-%d", pr)
	st = w.statusOf(t, p1, check, 5*time.Minute)
	if !strings.HasPrefix(st, "success") {
		t.Fatalf("preview of %s: %s", p1[:7], st)
	}
	t.Logf("preview: %s", st)
	preview := w.App(t, fmt.Sprintf("web-pr-%d", pr))
	if preview.HostPort == 0 || preview.HostPort == prod || !deploytest.Serves(preview.HostPort, "pr-1") || !deploytest.Serves(prod, "1") {
		t.Fatalf("preview on port %d, production on %d: want pr-1 and 1", preview.HostPort, prod)
	}
	// The attack: the pull request's code reads its whole environment.
	for _, c := range []struct {
		port       int
		name, want string
	}{
		{preview.HostPort, "PROD_SECRET", ""}, {preview.HostPort, "PREVIEW_SECRET", "preview-value"},
		{prod, "PROD_SECRET", "production-only-value"}, {prod, "PREVIEW_SECRET", ""},
	} {
		if _, got, err := deploytest.Get(c.port, "/env/"+c.name); err != nil || got != c.want {
			t.Errorf("port %d sees %s=%q (%v), want %q", c.port, c.name, got, err, c.want)
		}
	}

	p2 := w.Repo.Commit(t, "feature", files("pr-2"), "pr v2")
	w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("synchronize", pr, "feature", p2, repoID))
	if st := w.statusOf(t, p2, check, 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("preview of %s: %s", p2[:7], st)
	}
	if port := w.App(t, fmt.Sprintf("web-pr-%d", pr)).HostPort; port != preview.HostPort || !deploytest.Serves(port, "pr-2") {
		t.Fatalf("after synchronize the preview on %d does not serve pr-2", port)
	}
	await(t, 30*time.Second, "the preview comment on the pull request", func() bool {
		for _, c := range botReplies(w.GitHub, e2eRepo, pr) {
			if strings.Contains(c.Body, fmt.Sprintf("http://127.0.0.1:%d/", preview.HostPort)) && strings.Contains(c.Body, p2[:7]) {
				return true
			}
		}
		return false
	})

	// Over the cap (1): refused with an error status saying so.
	other := w.Repo.Commit(t, "other", files("other"), "other")
	w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("opened", 8, "other", other, repoID))
	if st := w.statusOf(t, other, "keystone/web-pr-8", 2*time.Minute); !strings.HasPrefix(st, "error") ||
		!strings.Contains(st, "KEYSTONE_MAX_PREVIEWS") {
		t.Fatalf("preview over the cap: %s", st)
	}
	// A fork's pull request is not built: the job ends with no status.
	fork := w.Repo.CommitToRef(t, "main", "refs/pull/9/head", files("fork"), "fork")
	forkGUID, _ := w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("opened", 9, "main", fork, repoID+1000))
	await(t, time.Minute, "the fork's delivery processed", func() bool {
		var done bool
		err := w.Store.Pool().QueryRow(t.Context(), `SELECT processed_at IS NOT NULL FROM webhook_deliveries WHERE guid = $1`,
			forkGUID).Scan(&done)
		return err == nil && done
	})
	if sts := w.GitHub.Statuses(e2eRepo, fork); len(sts) != 0 {
		t.Errorf("a fork's pull request got statuses: %+v", sts)
	}
	// Only a writer's /keystone preview deploys it, once, from GitHub's
	// head of the pull request (the cap of 1 is taken by pull request 7:
	// refused, saying so).
	w.GitHub.SetPullRequest(e2eRepo, githubtest.PullRequest{Number: 9, State: "open", HeadRef: "main", HeadSHA: fork, HeadRepoID: repoID + 1000})
	forkCommand := func(user string) githubtest.Comment {
		c := w.GitHub.AddComment(e2eRepo, 9, user, "/keystone preview")
		if _, code := w.hooks.deliver("issue_comment", c.Event(e2eRepo, deploytest.Installation)); code != http.StatusAccepted {
			t.Fatalf("comment delivery answered %d", code)
		}
		return c
	}
	w.Reply(t, forkCommand("bob"), "needs write, maintain or admin access", time.Minute)
	w.Reply(t, forkCommand("alice"), "1 previews are open", time.Minute)
	if sts := w.GitHub.Statuses(e2eRepo, fork); len(sts) != 0 {
		t.Errorf("a refused preview of a fork got statuses: %+v", sts)
	}

	closed := time.Now()
	w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("closed", pr, "feature", p2, repoID))
	label := "io.keystone.app=" + e2eRepo + "/" + fmt.Sprintf("web-pr-%d", pr)
	await(t, 30*time.Second, "the preview's container, image and port gone", func() bool {
		_, _, err := deploytest.Get(preview.HostPort, "/")
		return len(w.Containers(t, label)) == 0 && len(w.Images(t, label)) == 0 && err != nil
	})
	t.Logf("teardown after closed: %v", time.Since(closed).Round(10*time.Millisecond))
	await(t, 30*time.Second, "the preview's GitHub deployment inactive", func() bool {
		for _, d := range w.GitHub.Deployments(e2eRepo) {
			if d.Environment == fmt.Sprintf("web-pr-%d", pr) && d.SHA == p2 {
				return d.TransientEnvironment && !d.ProductionEnvironment && strings.HasSuffix(deploymentStates(d), "inactive")
			}
		}
		return false
	})
	if !deploytest.Serves(prod, "1") {
		t.Errorf("production stopped serving v1 when the preview closed")
	}
	w.Reply(t, forkCommand("alice"), "✅", 3*time.Minute)
	forkPort := w.App(t, "web-pr-9").HostPort
	if !deploytest.Serves(forkPort, "fork") {
		t.Errorf("the fork's preview on %d does not serve its head", forkPort)
	}
	w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("closed", 9, "main", fork, repoID+1000))
	// The cap counts open previews: the next one may only open once this
	// one's close has gone through.
	forkLabel := "io.keystone.app=" + e2eRepo + "/web-pr-9"
	await(t, 30*time.Second, "the fork's preview removed", func() bool {
		_, _, err := deploytest.Get(forkPort, "/")
		return len(w.Containers(t, forkLabel)) == 0 && err != nil
	})

	// A pull request closed while Keystone missed the event: the periodic
	// pass asks GitHub and removes its preview.
	const missed = 10
	w.GitHub.SetPullRequest(e2eRepo, githubtest.PullRequest{Number: missed, State: "open", HeadRef: "other", HeadSHA: other, HeadRepoID: repoID})
	w.hooks.deliver("pull_request", w.Repo.PullRequestEvent("opened", missed, "other", other, repoID))
	if st := w.statusOf(t, other, fmt.Sprintf("keystone/web-pr-%d", missed), 5*time.Minute); !strings.HasPrefix(st, "success") {
		t.Fatalf("preview of pull request %d: %s", missed, st)
	}
	port := w.App(t, fmt.Sprintf("web-pr-%d", missed)).HostPort
	w.GitHub.SetPullRequest(e2eRepo, githubtest.PullRequest{Number: missed, State: "closed", HeadRef: "other", HeadSHA: other, HeadRepoID: repoID})
	label = "io.keystone.app=" + e2eRepo + "/" + fmt.Sprintf("web-pr-%d", missed)
	await(t, 30*time.Second, "the preview of a pull request closed unseen removed", func() bool {
		_, _, err := deploytest.Get(port, "/")
		return len(w.Containers(t, label)) == 0 && len(w.Images(t, label)) == 0 && err != nil
	})
}
