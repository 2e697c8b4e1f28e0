package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keystone-app/keystone/internal/deploy/keystoneyml"
	"github.com/keystone-app/keystone/internal/store"
)

func TestDescriptions(t *testing.T) {
	sha := "abc1234def5678abc1234def5678abc1234def56"
	cases := []struct{ got, want string }{
		{descFetching(sha), "Fetching abc1234"},
		{descBuilding(sha), "Building abc1234"},
		{descStarting(sha), "Starting abc1234"},
		{descDeployed(12340*time.Millisecond, HealthResult{Healthy: true, Check: "GET /healthz", Status: 200}),
			"Deployed in 12.3s · healthy (GET /healthz 200)"},
		{descDeployed(3*time.Minute+4*time.Second, HealthResult{Healthy: true, After: 5 * time.Second}),
			"Deployed in 3m04s · running after 5.0s"},
		{descHealthFailed(HealthResult{Check: "GET /healthz", Status: 500, After: 30 * time.Second}, "abc1233ffff", true),
			"Health check failed: GET /healthz 500 after 30s; abc1233 still serving"},
		{descHealthFailed(HealthResult{Check: "GET /healthz", Err: "connection refused", After: 90 * time.Second}, "", false),
			"Health check failed: GET /healthz: connection refused after 1m30s"},
		{descHealthFailed(HealthResult{Exited: true, Err: "container exited with code 1", After: 2100 * time.Millisecond}, "abc1233ffff", false),
			"Health check failed: container exited with code 1 after 2.1s; abc1233 could not be restarted"},
		{descBuildFailed(buildStep{current: "3", total: "6", failed: "The command '/bin/sh -c make' returned a non-zero code: 1"}.describe()),
			"Build failed: step 3/5 exited 1"},
		{descBuildFailed(buildStep{current: "2", total: "5", failed: "COPY failed: file not found\nmore"}.describe()),
			"Build failed: step 2/4: COPY failed: file not found"},
		{descBuildFailed((&buildFailure{step: "[stage-1 2/4] RUN make", message: "executor failed running [/bin/sh -c make]: exit code: 2"}).describe("")),
			"Build failed: step 2/4 of stage stage-1 (RUN make) exited 2"},
		{descBuildFailed((&buildFailure{step: "[2/3] COPY missing /x", message: "failed to compute cache key: \"/missing\" not found: not found"}).describe("")),
			`Build failed: step 2/3 (COPY missing /x): failed to compute cache key: "/missing" not found: not found`},
		{descBuildFailed((&buildFailure{message: "failed to solve with frontend dockerfile.v0: failed to create LLB definition: dockerfile parse error line 3: unknown instruction: RUNN"}).describe("")),
			"Build failed: dockerfile parse error line 3: unknown instruction: RUNN"},
		{descBuildFailed((&buildFailure{step: "resolve image config for docker.io/docker/dockerfile:1", message: "no such host"}).describe("docker/dockerfile:1")),
			"Build failed: line 1 `# syntax=docker/dockerfile:1` needs a frontend image that cannot be pulled"},
		{descBuildFailed((&buildFailure{step: "[2/2] RUN --mount=type=secret,id=X,required cat", message: "secret X: not found"}).describe("")),
			"Build failed: step 2/2 (RUN --mount=type=secret,id=X,required cat) mounts secret X, which is not in build_secrets"},
		{descInvalidConfig(`line 4: unknown key "prot"`), `Invalid .keystone.yml: line 4: unknown key "prot"`},
		{descSuperseded(sha), "Not deployed: superseded by abc1234"},
		{descLocked("web", "alice", "release freeze"), "Not deployed: web is locked by @alice (release freeze)"},
		{descLocked("web", "@alice", ""), "Not deployed: web is locked by @alice"},
		{descErrored("Docker unreachable", sha), "Deploy errored: Docker unreachable; abc1234 still serving"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got  %q\nwant %q", c.got, c.want)
		}
	}
}

func TestClipDescriptionCutsOnRunes(t *testing.T) {
	long := strings.Repeat("é", 200)
	got := clipDescription("Build failed: " + long)
	if utf8.RuneCountInString(got) != MaxDescription || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("%d runes, valid %v: %q", utf8.RuneCountInString(got), utf8.ValidString(got), got)
	}
	if got := clipDescription("two\nlines  and\tspace"); got != "two lines and space" {
		t.Fatalf("whitespace not folded: %q", got)
	}
}

func TestContainerEnvOrder(t *testing.T) {
	cfg := keystoneyml.App{Port: 8080, Env: map[string]string{"A": "config", "B": "config", "PORT": "sneaky"}}
	got := containerEnv(cfg, map[string]string{"B": "secret", "C": "secret", "PORT": "1"})
	want := []string{"A=config", "B=secret", "C=secret", "PORT=8080"}
	if !slices.Equal(got, want) {
		t.Fatalf("env %v, want %v", got, want)
	}
}

type memLog struct {
	mu    sync.Mutex
	lines []string
}

func (m *memLog) AppendDeploymentLog(_ context.Context, _ int64, lines []string, _ store.LogLimit) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, lines...)
	return len(lines), nil
}

func TestDeployLogSplitsAndRedacts(t *testing.T) {
	st := &memLog{}
	l := newDeployLog(st, 1, newLogRedactor(map[string]string{"A": "hunter2", "B": "multi\nline-secret"}), DefaultLogLimit, slog.New(slog.DiscardHandler))
	for _, chunk := range []string{"Step 1/2 : FROM scratch\n", "par", "tial line\r", "\nprogress 10%\rprogress 100%\n",
		"password is hunter2\n", "multi\n", "a line-secret here\n", strings.Repeat("x", maxLineBytes+5) + "\n", "no end"} {
		_, _ = l.Write([]byte(chunk))
	}
	l.Printf("Keystone says %s", "hello")
	l.Close()
	want := []string{"Step 1/2 : FROM scratch", "partial line", "progress 10%", "progress 100%",
		"password is [redacted]", "multi", "a [redacted] here", strings.Repeat("x", maxLineBytes), "xxxxx",
		"==> Keystone says hello", "no end"}
	if !slices.Equal(st.lines, want) {
		t.Fatalf("lines\n got %q\nwant %q", st.lines, want)
	}
}

func TestLabelledContextAppendsOneLabelLine(t *testing.T) {
	var src bytes.Buffer
	tw := tar.NewWriter(&src)
	for name, body := range map[string]string{"Dockerfile": "FROM scratch\nCOPY a /a", "a": "data"} {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(body))
	}
	_ = tw.Close()
	rc, wait := labelledContext(&src, "./Dockerfile", map[string]string{"io.keystone.sha": "abc", "io.keystone.app": `o/r/"x"`})
	files := readTar(t, rc)
	rc.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	want := "FROM scratch\nCOPY a /a\nLABEL io.keystone.app=\"o/r/\\\"x\\\"\" io.keystone.sha=\"abc\"\n"
	if files["Dockerfile"] != want || files["a"] != "data" {
		t.Fatalf("context: %q", files)
	}

	// A Dockerfile that is a link is refused, not followed.
	var linked bytes.Buffer
	tw = tar.NewWriter(&linked)
	_ = tw.WriteHeader(&tar.Header{Name: "Dockerfile", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})
	_ = tw.Close()
	rc, wait = labelledContext(&linked, "Dockerfile", nil)
	_, _ = io.Copy(io.Discard, rc)
	if err := wait(); !errors.Is(err, errDockerfileNotRegular) {
		t.Fatalf("symlinked Dockerfile: %v", err)
	}
}

func readTar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[hdr.Name] = string(b)
	}
}

func TestFetchProblems(t *testing.T) {
	sha := strings.Repeat("a", 40)
	cases := map[string]string{
		"fatal: remote error: upload-pack: not our ref aaaa":                                                      "commit aaaaaaa is not in the repository",
		"remote: invalid credentials\nfatal: unable to access 'http://x/': The requested URL returned error: 401": "GitHub refused the installation's token",
		"remote: Repository not found.\nfatal: repository 'http://x/o/r.git/' not found":                          "repository not found",
		"fatal: unable to access 'http://x/': Failed to connect to x port 80: Connection refused":                 "fatal: unable to access 'http://x/': Failed to connect to x port 80: Connection refused",
	}
	for stderr, want := range cases {
		if got := fetchProblem(&GitError{Op: "fetch", Stderr: stderr}, sha); got != want {
			t.Errorf("%q: got %q, want %q", stderr, got, want)
		}
	}
}

func TestMirrorsOfLookalikeRepositoriesAreApart(t *testing.T) {
	s := NewSources(t.TempDir())
	a := s.mirror(Repo{Owner: "octo", Name: "a.b"})
	b := s.mirror(Repo{Owner: "octo", Name: "a-b"})
	c := s.mirror(Repo{Owner: "Octo", Name: "A.B"})
	if a == b || a != c {
		t.Fatalf("mirrors %s, %s, %s: lookalikes must differ, case must not", a, b, c)
	}
}

// A mirror whose old fetched refs cannot be deleted is reported, not
// silently left to grow: here leftover lock files block update-ref.
func TestPruneFetchedRefsReportsFailure(t *testing.T) {
	ctx := t.Context()
	s := NewSources(t.TempDir())
	dir := filepath.Join(t.TempDir(), "m.git")
	git := func(stdin string, args ...string) string {
		t.Helper()
		var in io.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		out, err := s.git(ctx, dir, "", in, args...)
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	if _, err := s.git(ctx, "", "", nil, "init", "--quiet", "--bare", dir); err != nil {
		t.Fatal(err)
	}
	tree := git("", "mktree")
	commit := git("", "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree, "-m", "c")
	createRefs := func(prefix string, n int) {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "create refs/keystone/fetched/%s%03d %s\n", prefix, i, commit)
		}
		git(b.String(), "update-ref", "--stdin")
	}
	countRefs := func() int {
		return len(strings.Fields(git("", "for-each-ref", "--format=%(refname)", "refs/keystone/fetched/")))
	}

	createRefs("a", 103)
	if err := s.pruneFetchedRefs(ctx, dir); err != nil {
		t.Fatalf("prune of a sound mirror: %v", err)
	}
	if n := countRefs(); n != 100 {
		t.Fatalf("%d fetched refs after a prune, want 100", n)
	}

	createRefs("b", 3)
	for _, ref := range strings.Fields(git("", "for-each-ref", "--format=%(refname)", "refs/keystone/fetched/")) {
		if err := os.WriteFile(filepath.Join(dir, ref+".lock"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := s.pruneFetchedRefs(ctx, dir)
	if err == nil || !strings.Contains(err.Error(), "prune 3 old fetched refs") {
		t.Fatalf("prune with every ref locked = %v, want an error naming the prune", err)
	}
}
