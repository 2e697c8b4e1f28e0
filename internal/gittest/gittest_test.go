package gittest_test

import (
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
)

func token(t *testing.T, gh *githubtest.Server, inst int64) string {
	t.Helper()
	app, err := github.New(github.Config{AppID: gh.AppID, PrivateKeyPEM: gh.PrivateKeyPEM, APIURL: gh.URL})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := app.InstallationToken(t.Context(), inst)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// clone runs `git clone` of url with basic auth x-access-token:tok passed in
// the environment, and returns its combined output.
func clone(t *testing.T, url, tok string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", "clone", "-q", url, t.TempDir()+"/c")
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	if tok != "" {
		auth := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + tok))
		cmd.Env = append(cmd.Env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader",
			"GIT_CONFIG_VALUE_0=Authorization: Basic "+auth)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCloneNeedsTheInstallationsToken(t *testing.T) {
	gh := githubtest.New(t)
	gh.AddInstallation(42, "octo", "octo/app")
	gh.AddInstallation(43, "other", "other/thing")
	srv := gittest.NewServer(t, gh)
	repo := srv.CreateRepo(t, "octo/app", 42, gh.RepositoryID("octo/app"))
	sha := repo.Commit(t, "main", map[string][]byte{"README": []byte("hello\n")}, "first")

	if out, err := clone(t, repo.CloneURL(), token(t, gh, 42)); err != nil {
		t.Fatalf("clone with the installation's token: %v\n%s", err, out)
	}
	cases := []struct{ name, tok, want string }{
		{"no token", "", "401"},
		{"a made-up token", "ghs_madeup", "401"},
		{"another installation's token", token(t, gh, 43), "not found"},
	}
	for _, c := range cases {
		out, err := clone(t, repo.CloneURL(), c.tok)
		if err == nil {
			t.Errorf("%s: clone succeeded", c.name)
			continue
		}
		if !strings.Contains(strings.ToLower(out), c.want) && !strings.Contains(out, "could not read Username") {
			t.Errorf("%s: output %q does not say %q", c.name, out, c.want)
		}
	}
	if got := repo.Head(t, "main"); got != sha {
		t.Fatalf("head of main = %s, want %s", got, sha)
	}
	if n := srv.Fetches("octo/app"); n != 1 {
		t.Fatalf("%d authorized fetches recorded, want 1", n)
	}
}

func TestStallHoldsFetchesUntilReleased(t *testing.T) {
	gh := githubtest.New(t)
	gh.AddInstallation(42, "octo", "octo/app")
	srv := gittest.NewServer(t, gh)
	repo := srv.CreateRepo(t, "octo/app", 42, 1)
	repo.Commit(t, "main", map[string][]byte{"a": []byte("a")}, "a")
	tok := token(t, gh, 42)

	var inFlight atomic.Int32
	srv.OnRequest(func(r *http.Request) {
		if r.Method == http.MethodPost {
			inFlight.Add(1)
		}
	})
	release := srv.Stall("octo/app")
	done := make(chan error, 1)
	go func() { _, err := clone(t, repo.CloneURL(), tok); done <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for inFlight.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fetch never reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the stalled clone finished: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("clone after release: %v", err)
	}
}

func TestCommitToRefLeavesTheBranch(t *testing.T) {
	gh := githubtest.New(t)
	gh.AddInstallation(42, "octo", "octo/app")
	srv := gittest.NewServer(t, gh)
	repo := srv.CreateRepo(t, "octo/app", 42, 1)
	main := repo.Commit(t, "main", map[string][]byte{"a": []byte("1")}, "one")
	pr := repo.CommitToRef(t, "main", "refs/pull/1/head", map[string][]byte{"a": []byte("2")}, "from a fork")
	if pr == main || repo.Head(t, "main") != main {
		t.Fatalf("main moved: head %s, pr %s, before %s", repo.Head(t, "main"), pr, main)
	}
	dev := repo.Commit(t, "dev", map[string][]byte{"b": []byte("1")}, "dev")
	if repo.Head(t, "dev") != dev || repo.Head(t, "main") != main {
		t.Fatal("a commit to dev moved main or did not move dev")
	}
}

func TestTestAppBinaryIsStatic(t *testing.T) {
	bin := gittest.TestAppBinary(t)
	if len(bin) < 1<<20 || string(bin[1:4]) != "ELF" {
		t.Fatalf("test app is %d bytes, not an ELF binary", len(bin))
	}
	files := gittest.AppFiles(t, "", gittest.Behaviour{Version: "v1", BuildStep: true, StartDelay: time.Second})
	for _, name := range []string{"app", "behaviour.json", "Dockerfile"} {
		if len(files[name]) == 0 {
			t.Fatalf("AppFiles lacks %s", name)
		}
	}
	if !strings.Contains(string(files["Dockerfile"]), `RUN ["/app", "build-step"]`) ||
		!strings.Contains(string(files["behaviour.json"]), `"start_delay": "1s"`) {
		t.Fatalf("files do not describe the behaviour:\n%s\n%s", files["Dockerfile"], files["behaviour.json"])
	}
}
