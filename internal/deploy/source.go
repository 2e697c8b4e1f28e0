package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keystone-app/keystone/internal/secrets"
)

// Sources keeps one bare mirror per repository under DataDir/sources and
// fetches into it, so a later deploy of a repository transfers only what
// changed. Build contexts are streamed out of it with `git archive`: there is
// never a checkout.
//
// The installation token reaches git only through its environment (an
// http.extraHeader set with GIT_CONFIG_COUNT): never an argument list, a URL,
// a file, a log line or an error text.
type Sources struct {
	dir string
}

// Repo names a repository to fetch from.
type Repo struct {
	Owner, Name string
	CloneURL    string
}

// FullName is owner/name.
func (r Repo) FullName() string { return r.Owner + "/" + r.Name }

// NewSources keeps mirrors under dataDir/sources.
func NewSources(dataDir string) *Sources {
	return &Sources{dir: filepath.Join(dataDir, "sources")}
}

var shaPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// mirror is the directory of r's mirror. The hash of the full name keeps two
// repositories whose names read alike once cleaned ("a.b", "a-b") apart: a
// mirror must never serve one repository's commits for another's.
func (s *Sources) mirror(r Repo) string {
	sum := sha256.Sum256([]byte(strings.ToLower(r.Owner + "/" + r.Name)))
	return filepath.Join(s.dir, slug(r.Owner), slug(r.Name)+"-"+hex.EncodeToString(sum[:6])+".git")
}

// Has reports whether the mirror holds commit sha.
func (s *Sources) Has(ctx context.Context, r Repo, sha string) bool {
	if !shaPattern.MatchString(sha) {
		return false
	}
	_, err := s.git(ctx, s.mirror(r), "", nil, "cat-file", "-e", sha+"^{commit}")
	return err == nil
}

// Fetch makes the mirror hold commit sha, fetching it from r.CloneURL with
// token unless it is there already. It reports whether it fetched.
func (s *Sources) Fetch(ctx context.Context, r Repo, token, sha string) (bool, error) {
	if !shaPattern.MatchString(sha) {
		return false, fmt.Errorf("fetch %s: %q is not a 40-hex commit SHA", r.FullName(), sha)
	}
	if s.Has(ctx, r, sha) {
		return false, nil
	}
	err := s.withMirror(ctx, r, func(dir string) error {
		if s.Has(ctx, r, sha) { // another fetch brought it while we waited
			return nil
		}
		// Depth 1: a build needs the commit's tree, not its history, and the
		// mirror's earlier commits still spare the objects they share.
		_, err := s.git(ctx, dir, token, nil, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--depth=1",
			r.CloneURL, "+"+sha+":refs/keystone/fetched/"+sha)
		if err != nil {
			return fmt.Errorf("fetch %s of %s: %w", shortSHA(sha), r.FullName(), err)
		}
		if err := s.pruneFetchedRefs(ctx, dir); err != nil {
			return fmt.Errorf("fetch %s of %s: %w", shortSHA(sha), r.FullName(), err)
		}
		return nil
	})
	return err == nil, err
}

// FetchBranchHead fetches the head commit of branch (depth 1) into the
// mirror and returns its SHA: the default branch's, whose .keystone.yml says
// which apps exist.
func (s *Sources) FetchBranchHead(ctx context.Context, r Repo, token, branch string) (string, error) {
	if branch == "" || strings.ContainsAny(branch, ": \t\n*?[\\^~") || strings.Contains(branch, "..") {
		return "", fmt.Errorf("fetch branch %q of %s: not a branch name", branch, r.FullName())
	}
	ref := "refs/keystone/head"
	var sha string
	err := s.withMirror(ctx, r, func(dir string) error {
		if _, err := s.git(ctx, dir, token, nil, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--depth=1",
			r.CloneURL, "+refs/heads/"+branch+":"+ref); err != nil {
			return fmt.Errorf("fetch branch %s of %s: %w", branch, r.FullName(), err)
		}
		out, err := s.git(ctx, dir, "", nil, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
		if err != nil {
			return fmt.Errorf("read the head of branch %s of %s: %w", branch, r.FullName(), err)
		}
		sha = strings.TrimSpace(string(out))
		return nil
	})
	return sha, err
}

// FetchBranches refreshes the mirror's copy of every branch of the
// repository (refs/keystone/branches/*) with their whole history, for
// questions about branches.
func (s *Sources) FetchBranches(ctx context.Context, r Repo, token string) error {
	return s.withMirror(ctx, r, func(dir string) error {
		args := []string{"fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--prune"}
		if _, err := os.Stat(filepath.Join(dir, "shallow")); err == nil {
			args = append(args, "--unshallow") // containment needs the history
		}
		_, err := s.git(ctx, dir, token, nil, append(args, r.CloneURL, "+refs/heads/*:refs/keystone/branches/*")...)
		if err != nil {
			return fmt.Errorf("fetch the branches of %s: %w", r.FullName(), err)
		}
		return nil
	})
}

// Branches returns the branches (as of the last FetchBranches) whose
// history contains sha: empty when sha is on no branch.
func (s *Sources) Branches(ctx context.Context, r Repo, sha string) ([]string, error) {
	out, err := s.git(ctx, s.mirror(r), "", nil, "for-each-ref", "--contains", sha,
		"--format=%(refname)", "refs/keystone/branches/")
	if err != nil {
		return nil, fmt.Errorf("find branches of %s containing %s: %w", r.FullName(), shortSHA(sha), err)
	}
	var branches []string
	for _, l := range strings.Fields(string(out)) {
		branches = append(branches, strings.TrimPrefix(l, "refs/keystone/branches/"))
	}
	return branches, nil
}

// Resolve returns the full SHA of rev: a branch name (as of the last
// FetchBranches) or a SHA or unambiguous SHA prefix of a commit the mirror holds.
func (s *Sources) Resolve(ctx context.Context, r Repo, rev string) (string, error) {
	candidates := []string{"refs/keystone/branches/" + rev}
	if regexp.MustCompile(`^[0-9a-f]{4,40}$`).MatchString(rev) {
		candidates = append([]string{rev}, candidates...)
	}
	for _, c := range candidates {
		out, err := s.git(ctx, s.mirror(r), "", nil, "rev-parse", "--verify", "--quiet", c+"^{commit}")
		if err == nil {
			return strings.TrimSpace(string(out)), nil
		}
	}
	return "", fmt.Errorf("%q is neither a branch nor a commit of %s", rev, r.FullName())
}

// ReadFile returns the content of path at commit sha, ok=false when the
// commit has no such file, and an error when it is larger than max bytes.
func (s *Sources) ReadFile(ctx context.Context, r Repo, sha, path string, max int64) ([]byte, bool, error) {
	spec := sha + ":" + path
	typ, err := s.git(ctx, s.mirror(r), "", nil, "cat-file", "-t", spec)
	if err != nil || strings.TrimSpace(string(typ)) != "blob" {
		return nil, false, nil
	}
	size, err := s.git(ctx, s.mirror(r), "", nil, "cat-file", "-s", spec)
	if err != nil {
		return nil, false, fmt.Errorf("read %s at %s: %w", path, shortSHA(sha), err)
	}
	var n int64
	if _, err := fmt.Sscan(string(size), &n); err != nil || n > max {
		return nil, true, fmt.Errorf("%s at %s is larger than %d bytes", path, shortSHA(sha), max)
	}
	out, err := s.git(ctx, s.mirror(r), "", nil, "cat-file", "blob", spec)
	if err != nil {
		return nil, false, fmt.Errorf("read %s at %s: %w", path, shortSHA(sha), err)
	}
	return out, true, nil
}

// ObjectType returns "tree", "blob" or "" (missing) for path at sha.
func (s *Sources) ObjectType(ctx context.Context, r Repo, sha, path string) string {
	spec := sha + ":" + path
	if path == "." || path == "" {
		spec = sha + "^{tree}"
	}
	out, err := s.git(ctx, s.mirror(r), "", nil, "cat-file", "-t", spec)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Archive streams the tar of directory dir ("." for the root) at commit sha.
// Close waits for git and reports its failure.
func (s *Sources) Archive(ctx context.Context, r Repo, sha, dir string) (io.ReadCloser, error) {
	tree := sha
	if dir != "." && dir != "" {
		tree = sha + ":" + dir
	}
	cmd := s.command(ctx, s.mirror(r), "", "archive", "--format=tar", tree)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &limitedBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("git archive: %w", err)
	}
	return &archive{ReadCloser: stdout, cmd: cmd, stderr: stderr}, nil
}

type archive struct {
	io.ReadCloser
	cmd    *exec.Cmd
	stderr *limitedBuffer
	once   sync.Once
	err    error
}

// Close stops reading, waits for git and reports its failure; calling it
// again returns the same result.
func (a *archive) Close() error {
	a.once.Do(func() {
		_ = a.ReadCloser.Close()
		if err := a.cmd.Wait(); err != nil {
			a.err = &GitError{Op: "archive", Stderr: a.stderr.String(), err: err}
		}
	})
	return a.err
}

// withMirror runs fn with the mirror created and locked against other
// writers, in this process and others (flock), after clearing lock files a
// killed git left behind.
func (s *Sources) withMirror(ctx context.Context, r Repo, fn func(dir string) error) error {
	dir := s.mirror(r)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create the source cache: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return fmt.Errorf("lock the mirror of %s: %w", r.FullName(), err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		_ = os.RemoveAll(dir) // a half-made mirror
		if _, err := s.git(ctx, "", "", nil, "init", "--quiet", "--bare", dir); err != nil {
			return fmt.Errorf("create the mirror of %s: %w", r.FullName(), err)
		}
	}
	removeStaleLocks(dir)
	return fn(dir)
}

// removeStaleLocks deletes git's *.lock files: under our flock no git
// writes here, so any left are from a git killed with its Keystone.
func removeStaleLocks(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == "objects" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".lock") {
			_ = os.Remove(p)
		}
		return nil
	})
}

// pruneFetchedRefs keeps the newest refs/keystone/fetched/* (they let the
// next fetch negotiate what the mirror has) and drops the rest. Its errors
// are returned: a mirror whose refs cannot be listed or deleted is broken
// (disk full, corrupt), and would grow without bound if ignored.
func (s *Sources) pruneFetchedRefs(ctx context.Context, dir string) error {
	const keep = 100
	out, err := s.git(ctx, dir, "", nil, "for-each-ref", "--sort=-committerdate", "--format=%(refname)", "refs/keystone/fetched/")
	if err != nil {
		return fmt.Errorf("list fetched refs: %w", err)
	}
	refs := strings.Fields(string(out))
	if len(refs) <= keep {
		return nil
	}
	var stdin bytes.Buffer
	for _, ref := range refs[keep:] {
		fmt.Fprintf(&stdin, "delete %s\n", ref)
	}
	if _, err := s.git(ctx, dir, "", &stdin, "update-ref", "--stdin"); err != nil {
		return fmt.Errorf("prune %d old fetched refs: %w", len(refs)-keep, err)
	}
	return nil
}

func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// git runs git in dir ("" for none) and returns its stdout. With a token,
// the request to the remote carries basic auth x-access-token:<token>,
// passed in git's environment only.
func (s *Sources) git(ctx context.Context, dir, token string, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := s.command(ctx, dir, token, args...)
	cmd.Stdin = stdin
	var stdout bytes.Buffer
	stderr := &limitedBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.String()
		if token != "" {
			// The token, and the basic-auth form git sends it in.
			msg = secrets.NewRedactor(map[string]string{"token": token, "basic": basicAuth(token)}).Redact(msg)
		}
		return nil, &GitError{Op: args[0], Stderr: msg, err: err}
	}
	return stdout.Bytes(), nil
}

func (s *Sources) command(ctx context.Context, dir, token string, args ...string) *exec.Cmd {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	// A minimal environment: nothing of the user's git configuration (a
	// credential helper, a url.insteadOf, GIT_TRACE) takes part.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir, "LANG=C", "LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=",
	}
	if token != "" {
		auth := basicAuth(token)
		cmd.Env = append(cmd.Env, "GIT_CONFIG_COUNT=2",
			"GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Basic "+auth,
			// No credential helper may store or offer anything.
			"GIT_CONFIG_KEY_1=credential.helper", "GIT_CONFIG_VALUE_1=")
	}
	// git dies with Keystone rather than finishing a fetch nobody waits for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// basicAuth is the credentials of HTTP basic auth x-access-token:<token>.
func basicAuth(token string) string {
	return base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
}

// GitError is a failed git command with what it printed (token removed).
type GitError struct {
	Op     string
	Stderr string
	err    error
}

func (e *GitError) Error() string {
	if line := lastLine(e.Stderr); line != "" {
		return fmt.Sprintf("git %s: %s", e.Op, line)
	}
	return fmt.Sprintf("git %s: %v", e.Op, e.err)
}

func (e *GitError) Unwrap() error { return e.err }

// fetchProblem says in a few words why a fetch failed, for a description.
func fetchProblem(err error, sha string) string {
	var ge *GitError
	if !errors.As(err, &ge) {
		return "could not reach the repository"
	}
	msg := strings.ToLower(ge.Stderr)
	switch {
	case strings.Contains(msg, "not our ref") || strings.Contains(msg, "couldn't find remote ref") ||
		strings.Contains(msg, "no such remote ref"):
		return "commit " + shortSHA(sha) + " is not in the repository"
	case strings.Contains(msg, "401") || strings.Contains(msg, "authentication failed") ||
		strings.Contains(msg, "could not read username"):
		return "GitHub refused the installation's token"
	case strings.Contains(msg, "not found") || strings.Contains(msg, "404"):
		return "repository not found"
	}
	return clipDescription(lastLine(ge.Stderr))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// redactURL drops any user information from a URL before it is shown.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}

// limitedBuffer keeps the last max bytes written.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
