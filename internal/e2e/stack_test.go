// Package e2e_test drives the whole of Keystone the way it runs in
// production: the real `keystone serve` and CLI binaries, real PostgreSQL,
// real Docker, a real git smart-HTTP server and the fake GitHub. Nothing in
// Keystone is replaced; the tests only speak to it through its entry points
// (webhooks, the CLI, the status page over HTTP or in Chromium) and look at
// what it left behind (GitHub, the database, Docker, its own logs).
package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
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
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/webhook"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const (
	repoName   = "octo/web"
	appKey     = "octo/web/web" // the audit target of the app "web"
	prNumber   = 5
	hookSecret = "e2e-webhook-secret"
	cliUser    = "e2e-ops" // SUDO_USER of every CLI run: its actor is "cli:e2e-ops"
	cliActor   = "cli:" + cliUser
	publicURL  = "http://keystone.test:8080"
	// deployWait bounds one deploy on a loaded 2-core machine (they take
	// 5-15 s; a parallel CI run can triple that).
	deployWait = 3 * time.Minute
)

// stack is one test's Keystone and everything around it.
type stack struct {
	*deploytest.Env
	env     map[string]string // of `keystone serve`
	cliKeys string            // KEYSTONE_ENCRYPTION_KEYS of CLI runs
	ks      *keystonetest.Process
}

// keyLine is one KEYSTONE_ENCRYPTION_KEYS entry: id and 32 bytes of b.
func keyLine(id string, b byte) string {
	return id + ":" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

// newStack prepares the world of repository octo/web, where alice may
// write and bob only read; keys are the encryption keys of serve and CLI.
func newStack(t *testing.T, keys string) *stack {
	t.Helper()
	e := deploytest.New(t, "web")
	e.GitHub.SetPermission(repoName, "alice", "write")
	e.GitHub.SetPermission(repoName, "bob", "read")
	env := map[string]string{
		"DATABASE_URL": e.DBURL, "KEYSTONE_GITHUB_WEBHOOK_SECRET": hookSecret, "KEYSTONE_DATA_DIR": t.TempDir(),
		"KEYSTONE_GITHUB_APP_ID": fmt.Sprint(e.GitHub.AppID), "KEYSTONE_GITHUB_PRIVATE_KEY": string(e.GitHub.PrivateKeyPEM),
		"KEYSTONE_GITHUB_API_URL": e.GitHub.URL, "KEYSTONE_PUBLIC_URL": publicURL,
		"KEYSTONE_PORT_RANGE": e.PortRange.String(), "KEYSTONE_APP_HOST": "127.0.0.1",
		"KEYSTONE_ENCRYPTION_KEYS": keys,
		// A push's clone_url must be the repository's URL under it.
		"KEYSTONE_GITHUB_WEB_URL": e.Git.URL,
	}
	return &stack{Env: e, env: env, cliKeys: keys}
}

// start runs `keystone serve`; when the test fails its last log lines are
// printed.
func (s *stack) start(t *testing.T) {
	t.Helper()
	s.ks = keystonetest.Start(t, s.env)
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(strings.TrimRight(s.ks.Output(), "\n"), "\n")
			t.Logf("Keystone's last log lines:\n%s", strings.Join(lines[max(len(lines)-60, 0):], "\n"))
		}
	})
}

type cliResult struct {
	stdout, stderr string
	exit           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.exit, r.stdout, r.stderr)
}

// cli runs the keystone binary with stdin against the stack's database.
func (s *stack) cli(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, keystonetest.Binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SUDO_USER=" + cliUser,
		"DATABASE_URL=" + s.DBURL, "KEYSTONE_ENCRYPTION_KEYS=" + s.cliKeys}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.exit = exit.ExitCode()
	case err != nil:
		t.Fatalf("keystone %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *stack) mustCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	r := s.cli(t, stdin, args...)
	if r.exit != 0 {
		t.Fatalf("keystone %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// password is each test user's password.
func password(name string) string { return "e2e-password-of-" + name }

// addUser creates a status page user with the CLI.
func (s *stack) addUser(t *testing.T, name, role string) {
	t.Helper()
	s.mustCLI(t, password(name)+"\n", "user", "add", name, "--role", role)
}

// deliver signs a webhook delivery as GitHub does and posts it.
func (s *stack) deliver(t *testing.T, event string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.ks.URL+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("e2e-%x", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", webhook.Sign([]byte(hookSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("deliver %s: %v", event, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delivery of %s answered %d", event, resp.StatusCode)
	}
}

// appFiles is the test app with behaviour b, tracked as "web" on main.
func appFiles(t *testing.T, b gittest.Behaviour) map[string][]byte {
	return deploytest.Files(t, gittest.KeystoneYML("web", "main"), b)
}

// push commits files on main (in pull request prNumber), delivers alice's
// push and returns the SHA.
func (s *stack) push(t *testing.T, files map[string][]byte, message string) string {
	t.Helper()
	sha := s.Repo.Commit(t, "main", files, message)
	s.GitHub.SetPullsForCommit(repoName, sha, prNumber)
	s.deliver(t, "push", s.Repo.PushEvent("main", sha, "alice"))
	return sha
}

// finalStatus waits for the last status of sha to leave pending.
func (s *stack) finalStatus(t *testing.T, sha string) githubtest.Status {
	t.Helper()
	var last githubtest.Status
	deploytest.Eventually(t, deployWait, "a final status of "+sha[:7], func() (bool, error) {
		sts := s.GitHub.Statuses(repoName, sha)
		if len(sts) == 0 {
			return false, nil
		}
		last = sts[len(sts)-1]
		return last.State != "pending", fmt.Errorf("last status %+v", last)
	})
	return last
}

// deployed pushes files and fails the test unless the deploy succeeds.
func (s *stack) deployed(t *testing.T, files map[string][]byte, message string) string {
	t.Helper()
	sha := s.push(t, files, message)
	if st := s.finalStatus(t, sha); st.State != "success" {
		t.Fatalf("final status of %s = %+v", message, st)
	}
	return sha
}

// comment posts a comment on the pull request and delivers it.
func (s *stack) comment(t *testing.T, user, body string) githubtest.Comment {
	t.Helper()
	c := s.GitHub.AddComment(repoName, prNumber, user, body)
	s.deliver(t, "issue_comment", c.Event(repoName, deploytest.Installation))
	return c
}

// lastDeploymentID is the newest deployment of the app "web".
func (s *stack) lastDeploymentID(t *testing.T) int64 {
	t.Helper()
	ds := s.Deployments(t, "web")
	if len(ds) == 0 {
		t.Fatal("no deployment of web")
	}
	return ds[len(ds)-1].ID
}
