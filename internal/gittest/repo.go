package gittest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Repo is a repository on the server with a working copy the test commits
// from. Commits reach the server by a local push, never over HTTP.
type Repo struct {
	FullName     string // owner/name as created
	Owner, Name  string
	ID           int64 // the repository id put in webhook payloads
	Installation int64

	srv     *Server
	dirName string // owner/name.git under the server's root
	bare    string
	work    string
	mu      sync.Mutex
}

// CreateRepo creates an empty repository fullName ("owner/name") owned by
// installation inst. id is its GitHub id in payloads (githubtest's
// RepositoryID, or any number).
func (s *Server) CreateRepo(t testing.TB, fullName string, inst, id int64) *Repo {
	t.Helper()
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok || owner == "" || name == "" {
		t.Fatalf("gittest: repository %q is not owner/name", fullName)
	}
	r := &Repo{FullName: fullName, Owner: owner, Name: name, ID: id, Installation: inst, srv: s,
		dirName: strings.ToLower(fullName) + ".git"}
	r.bare = filepath.Join(s.root, filepath.FromSlash(r.dirName))
	r.work = filepath.Join(t.TempDir(), "work")
	if err := os.MkdirAll(filepath.Dir(r.bare), 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, "", "init", "-q", "--bare", "-b", "main", r.bare)
	git(t, "", "init", "-q", "-b", "main", r.work)
	s.mu.Lock()
	s.repos[strings.ToLower(fullName)] = r
	s.mu.Unlock()
	return r
}

// CloneURL is the repository's clone_url, as in GitHub's payloads.
func (r *Repo) CloneURL() string { return r.srv.URL + "/" + r.FullName + ".git" }

// Commit writes files (path → content; nil content deletes the path) on
// branch, commits them and pushes the branch to the server. It returns the
// commit's SHA. The first commit of a branch starts from main's head when
// main exists, else from nothing.
func (r *Repo) Commit(t testing.TB, branch string, files map[string][]byte, message string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkout(t, branch)
	r.write(t, files)
	git(t, r.work, "add", "-A")
	git(t, r.work, "commit", "-q", "--allow-empty", "-m", message)
	sha := strings.TrimSpace(git(t, r.work, "rev-parse", "HEAD"))
	git(t, r.work, "push", "-q", "--force", r.bare, "HEAD:refs/heads/"+branch)
	return sha
}

// CommitToRef commits files on top of branch's head without moving the
// branch and pushes the commit to ref (e.g. "refs/pull/1/head"), the way a
// pull request from a fork appears: reachable from that ref only.
func (r *Repo) CommitToRef(t testing.TB, branch, ref string, files map[string][]byte, message string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkout(t, branch)
	git(t, r.work, "checkout", "-q", "--detach")
	r.write(t, files)
	git(t, r.work, "add", "-A")
	git(t, r.work, "commit", "-q", "--allow-empty", "-m", message)
	sha := strings.TrimSpace(git(t, r.work, "rev-parse", "HEAD"))
	git(t, r.work, "push", "-q", "--force", r.bare, "HEAD:"+ref)
	git(t, r.work, "checkout", "-q", branch)
	return sha
}

// Head returns the SHA branch points at on the server.
func (r *Repo) Head(t testing.TB, branch string) string {
	t.Helper()
	return strings.TrimSpace(git(t, r.bare, "rev-parse", "refs/heads/"+branch))
}

func (r *Repo) checkout(t testing.TB, branch string) {
	t.Helper()
	cur := strings.TrimSpace(gitAllowFail(r.work, "symbolic-ref", "--short", "-q", "HEAD"))
	if cur == branch {
		return
	}
	if _, err := exec.Command("git", "-C", r.work, "rev-parse", "-q", "--verify", "refs/heads/"+branch).Output(); err == nil {
		git(t, r.work, "checkout", "-q", branch)
		return
	}
	for _, base := range []string{"refs/heads/main", "HEAD"} {
		if _, err := exec.Command("git", "-C", r.work, "rev-parse", "-q", "--verify", base).Output(); err == nil {
			git(t, r.work, "checkout", "-q", "-b", branch, base)
			return
		}
	}
	git(t, r.work, "checkout", "-q", "--orphan", branch)
}

func (r *Repo) write(t testing.TB, files map[string][]byte) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(r.work, filepath.FromSlash(name))
		if content == nil {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if filepath.Base(name) == "app" {
			mode = 0o755
		}
		if err := os.WriteFile(p, content, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// PushEvent returns the body of GitHub's push webhook for sha pushed to
// branch by pusher, with this repository's clone_url and installation.
func (r *Repo) PushEvent(branch, sha, pusher string) []byte {
	payload := map[string]any{
		"ref": "refs/heads/" + branch, "before": strings.Repeat("0", 40), "after": sha,
		"created": false, "deleted": false, "forced": false,
		"compare":      "https://github.com/" + r.FullName + "/compare",
		"repository":   r.repository(),
		"pusher":       map[string]any{"name": pusher, "email": pusher + "@example.com"},
		"sender":       map[string]any{"login": pusher, "id": 1, "type": "User"},
		"installation": map[string]any{"id": r.Installation},
		"head_commit":  map[string]any{"id": sha, "message": "commit " + sha[:7], "timestamp": time.Now().Format(time.RFC3339)},
		"commits":      []any{},
	}
	b, _ := json.Marshal(payload)
	return b
}

// PullRequestEvent returns the body of GitHub's pull_request webhook with
// action for pull request number of this repository, from branch head at sha
// into main; headRepo is the id of the head's repository (another one for a
// fork).
func (r *Repo) PullRequestEvent(action string, number int, head, sha string, headRepo int64) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": action, "number": number,
		"pull_request": map[string]any{
			"number": number, "state": map[bool]string{true: "closed", false: "open"}[action == "closed"],
			"updated_at": time.Now().UTC().Format(time.RFC3339Nano),
			"head":       map[string]any{"ref": head, "sha": sha, "repo": map[string]any{"id": headRepo, "full_name": r.FullName}},
			"base":       map[string]any{"ref": "main"},
		},
		"repository": r.repository(), "installation": map[string]any{"id": r.Installation},
		"sender": map[string]any{"login": "alice", "type": "User"},
	})
	return b
}

// repository is the repository object of this repository's webhooks.
func (r *Repo) repository() map[string]any {
	return map[string]any{
		"id": r.ID, "name": r.Name, "full_name": r.FullName, "private": true,
		"owner":     map[string]any{"login": r.Owner, "name": r.Owner},
		"clone_url": r.CloneURL(), "html_url": "https://github.com/" + r.FullName,
		"default_branch": "main", "master_branch": "main", "pushed_at": time.Now().Unix(),
	}
}

// git runs git in dir with a fixed identity and no user configuration,
// failing the test on error; it returns stdout.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(dir, args...)
	if err != nil {
		t.Fatalf("gittest: git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func gitAllowFail(dir string, args ...string) string {
	out, _ := runGit(dir, args...)
	return out
}

func runGit(dir string, args ...string) (string, error) {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), &gitError{err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return string(out), nil
}

type gitError struct {
	err    error
	stderr string
}

func (e *gitError) Error() string { return e.err.Error() + ": " + e.stderr }
