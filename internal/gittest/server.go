// Package gittest serves git repositories for tests the way GitHub does for
// a GitHub App: smart HTTP through the real `git http-backend`, behind HTTP
// basic auth whose password must be an installation token that the fake
// GitHub (githubtest) accepts for the installation owning the repository.
// It also builds the test app Keystone deploys and commits it into
// repositories.
package gittest

import (
	"crypto/subtle"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TokenChecker says which installation a token belongs to;
// *githubtest.Server implements it.
type TokenChecker interface {
	ValidToken(tok string) (installationID int64, ok bool)
}

// Request is one request the server received.
type Request struct {
	Method     string
	Path       string
	Repo       string // owner/name; "" when the path names none
	Service    string // git-upload-pack, git-receive-pack or ""
	Authorized bool
	Status     int
	Bytes      int64 // size of the answer's body
	At         time.Time
}

// Server is a git smart-HTTP server over bare repositories in a temporary
// directory. Repositories are reached at URL + "/owner/name.git".
type Server struct {
	URL    string
	root   string
	tokens TokenChecker
	srv    *httptest.Server
	cgi    *cgi.Handler
	done   chan struct{}

	mu        sync.Mutex
	repos     map[string]*Repo // by lower-case full name
	requests  []Request
	onRequest []func(r *http.Request)
	stalls    map[string]chan struct{} // by lower-case full name
}

var repoPath = regexp.MustCompile(`^/([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(\.git)?/(info/refs|git-upload-pack|git-receive-pack|HEAD|objects/.*)$`)

// NewServer starts a git server checking tokens with tokens, stopped when
// the test ends.
func NewServer(t testing.TB, tokens TokenChecker) *Server {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("gittest: git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("gittest: git http-backend not found: %v", err)
	}
	s := &Server{
		root: t.TempDir(), tokens: tokens, done: make(chan struct{}),
		repos: map[string]*Repo{}, stalls: map[string]chan struct{}{},
	}
	s.cgi = &cgi.Handler{
		Path: backend,
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME=" + s.root,
		},
		InheritEnv: []string{"PATH"},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(func() {
		close(s.done)
		s.srv.Close()
	})
	return s
}

// OnRequest calls fn with every request before it is served, in the
// server's goroutine: while it runs, the client waits. Tests use it to look
// at the machine while a fetch is in flight.
func (s *Server) OnRequest(fn func(r *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRequest = append(s.onRequest, fn)
}

// Stall makes fetches (git-upload-pack) of repository fullName wait until
// the returned release is called or the server stops. Calling release twice
// is harmless.
func (s *Server) Stall(fullName string) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.stalls[strings.ToLower(fullName)] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.stalls, strings.ToLower(fullName))
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// FetchedBytes is the size of every answer to fetches of fullName so far.
func (s *Server) FetchedBytes(fullName string) int64 {
	var n int64
	for _, r := range s.Requests() {
		if strings.EqualFold(r.Repo, fullName) && r.Service == "git-upload-pack" {
			n += r.Bytes
		}
	}
	return n
}

// Fetches counts the authorized git fetches and clones of fullName: each
// starts with one GET of info/refs for git-upload-pack.
func (s *Server) Fetches(fullName string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.EqualFold(r.Repo, fullName) && r.Method == http.MethodGet && r.Service == "git-upload-pack" && r.Authorized {
			n++
		}
	}
	return n
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	req := Request{Method: r.Method, Path: r.URL.Path, At: time.Now()}
	defer func() {
		req.Status, req.Bytes = rec.status, rec.bytes
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
	}()
	m := repoPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		http.NotFound(rec, r)
		return
	}
	req.Repo = m[1]
	req.Service = r.URL.Query().Get("service")
	if strings.HasSuffix(m[3], "git-upload-pack") || strings.HasSuffix(m[3], "git-receive-pack") {
		req.Service = m[3]
	}
	s.mu.Lock()
	rp := s.repos[strings.ToLower(req.Repo)]
	hooks := append([]func(*http.Request){}, s.onRequest...)
	stall := s.stalls[strings.ToLower(req.Repo)]
	s.mu.Unlock()
	for _, fn := range hooks {
		fn(r)
	}
	if !s.authorize(rec, r, rp) {
		return
	}
	req.Authorized = true
	if req.Service == "git-receive-pack" {
		http.Error(rec, "pushing over HTTP is not supported by gittest: use Repo.Commit", http.StatusForbidden)
		return
	}
	if stall != nil && r.Method == http.MethodPost {
		select {
		case <-stall:
		case <-s.done:
			return
		case <-r.Context().Done():
			return
		}
	}
	// The backend finds the repository by the path; normalise the case and
	// the .git suffix the way GitHub accepts them.
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + rp.dirName + "/" + m[3]
	s.cgi.ServeHTTP(rec, r2)
}

// authorize answers 401 unless the request carries basic auth
// x-access-token:<token> valid for the installation owning rp, and 404 when
// the repository does not exist or the token's installation cannot see it,
// as GitHub does.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, rp *Repo) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return false
	}
	inst, valid := s.tokens.ValidToken(pass)
	if subtle.ConstantTimeCompare([]byte(user), []byte("x-access-token")) != 1 || !valid {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
		http.Error(w, "invalid credentials", http.StatusUnauthorized)
		return false
	}
	if rp == nil || rp.Installation != inst {
		http.Error(w, "Repository not found.", http.StatusNotFound)
		return false
	}
	return true
}
