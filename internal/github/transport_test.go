package github_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	gh "github.com/google/go-github/v66/github"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
)

const (
	sha          = "0123456789abcdef0123456789abcdef01234567"
	permPath     = "/repos/acme/web/collaborators/"
	statusPath   = "/repos/acme/web/statuses/"
	commentsPath = "/repos/acme/web/issues/7/comments"
)

// getPermission is an idempotent call: GET .../collaborators/alice/permission.
func getPermission(app *github.App) error {
	_, err := app.CollaboratorPermission(context.Background(), inst, owner, repoName, "alice")
	return err
}

// createStatus is a POST that creates something.
func createStatus(app *github.App) error {
	_, _, err := app.Installation(inst).Repositories.CreateStatus(context.Background(), owner, repoName, sha,
		&gh.RepoStatus{State: gh.String("pending"), Context: gh.String("keystone/web"), Description: gh.String("Queued")})
	return err
}

// createComment is the POST whose repetition users would see.
func createComment(app *github.App) error {
	_, _, err := app.Installation(inst).Issues.CreateComment(context.Background(), owner, repoName, 7,
		&gh.IssueComment{Body: gh.String("Deploying abc1234")})
	return err
}

// statusOf returns the HTTP status of a go-github error, 0 if none.
func statusOf(err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

func TestServerErrorOnGETIsRetried(t *testing.T) {
	srv := newFake(t)
	srv.Inject(githubtest.Fault{Method: "GET", PathPrefix: permPath, Status: 500, Times: 1})
	if err := getPermission(newApp(t, srv)); err != nil {
		t.Fatalf("GET after one 500: %v", err)
	}
	reqs := srv.RequestsTo("GET", permPath)
	if len(reqs) != 2 || reqs[0].Status != 500 || reqs[1].Status != 200 {
		t.Fatalf("requests = %v, want a 500 then a 200", statuses(reqs))
	}
}

func TestServerErrorOnCreatingPOSTIsNotRetried(t *testing.T) {
	srv := newFake(t)
	// GitHub created the comment, then failed to answer.
	srv.Inject(githubtest.Fault{Method: "POST", PathPrefix: commentsPath, Status: 500, Times: 1, Apply: true})
	err := createComment(newApp(t, srv))
	if statusOf(err) != 500 {
		t.Fatalf("CreateComment = %v, want GitHub's 500 back", err)
	}
	if n := len(srv.RequestsTo("POST", commentsPath)); n != 1 {
		t.Errorf("POST requests = %d, want 1", n)
	}
	if n := len(srv.Comments(fullRepo, 7)); n != 1 {
		t.Errorf("comments = %d, want exactly 1", n)
	}
}

func TestTimeoutAfterGitHubActedIsNotRetriedOnPOST(t *testing.T) {
	srv := newFake(t)
	srv.Inject(githubtest.Fault{Method: "POST", PathPrefix: commentsPath, Stall: 10 * time.Second, Times: 1})
	app := newApp(t, srv, func(c *github.Config) { c.RequestTimeout = 300 * time.Millisecond })
	start := time.Now()
	err := createComment(app)
	if err == nil {
		t.Fatalf("CreateComment succeeded although the answer came after the timeout")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("CreateComment took %s, want about the 300ms timeout", d)
	}
	if n := len(srv.RequestsTo("POST", commentsPath)); n != 1 {
		t.Errorf("POST requests = %d, want 1", n)
	}
	if n := len(srv.Comments(fullRepo, 7)); n != 1 {
		t.Errorf("comments = %d, want exactly 1", n)
	}
}

func TestTimeoutOnGETIsRetried(t *testing.T) {
	srv := newFake(t)
	srv.Inject(githubtest.Fault{Method: "GET", PathPrefix: permPath, Stall: 10 * time.Second, Times: 1})
	app := newApp(t, srv, func(c *github.Config) { c.RequestTimeout = 300 * time.Millisecond })
	if err := getPermission(app); err != nil {
		t.Fatalf("GET after one timeout: %v", err)
	}
	if n := len(srv.RequestsTo("GET", permPath)); n != 2 {
		t.Errorf("GET requests = %d, want 2", n)
	}
}

func TestRateLimitsAreWaitedAndRetried(t *testing.T) {
	tests := []struct {
		name   string
		status int
		method string
		path   string
		call   func(*github.App) error
	}{
		{"429 on POST status", 429, "POST", statusPath, createStatus},
		{"429 on GET", 429, "GET", permPath, getPermission},
		{"403 secondary on POST status", 403, "POST", statusPath, createStatus},
		{"403 secondary on GET", 403, "GET", permPath, getPermission},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newFake(t)
			srv.Inject(githubtest.Fault{Method: tt.method, PathPrefix: tt.path, Status: tt.status, RetryAfter: time.Second, Times: 1})
			if err := tt.call(newApp(t, srv)); err != nil {
				t.Fatalf("call after a %d with Retry-After: 1: %v", tt.status, err)
			}
			reqs := srv.RequestsTo(tt.method, tt.path)
			if len(reqs) != 2 || reqs[0].Status != tt.status || reqs[1].Status/100 != 2 {
				t.Fatalf("requests = %v, want %d then success", statuses(reqs), tt.status)
			}
			if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
				t.Errorf("retry came %s after the %d, want at least Retry-After (1s)", gap, tt.status)
			}
			if tt.method == "POST" {
				if n := len(srv.Statuses(fullRepo, sha)); n != 1 {
					t.Errorf("statuses = %d, want exactly 1", n)
				}
			}
		})
	}
}

func TestRateLimitResetIsHonoured(t *testing.T) {
	srv := newFake(t)
	resetAt := time.Now().Add(1200 * time.Millisecond)
	srv.Inject(githubtest.Fault{Method: "GET", PathPrefix: permPath, Status: 403, ResetAt: resetAt})
	if err := getPermission(newApp(t, srv)); err != nil {
		t.Fatalf("GET after a primary rate limit: %v", err)
	}
	reqs := srv.RequestsTo("GET", permPath)
	if len(reqs) != 2 || reqs[0].Status != 403 || reqs[1].Status != 200 {
		t.Fatalf("requests = %v, want a 403 then a 200", statuses(reqs))
	}
	// The fake announces the reset rounded up to the second.
	reset := resetAt.Truncate(time.Second).Add(time.Second)
	if reqs[1].At.Before(reset) {
		t.Errorf("retry at %s, before x-ratelimit-reset %s", reqs[1].At, reset)
	}
}

func TestAttemptsAreBounded(t *testing.T) {
	for _, attempts := range []int{1, 2, 4} {
		srv := newFake(t)
		srv.Inject(githubtest.Fault{Method: "GET", PathPrefix: permPath, Status: 500})
		app := newApp(t, srv, func(c *github.Config) { c.MaxAttempts = attempts })
		err := getPermission(app)
		if statusOf(err) != 500 {
			t.Errorf("MaxAttempts %d: err = %v, want a *gh.ErrorResponse with 500", attempts, err)
		}
		if n := len(srv.RequestsTo("GET", permPath)); n != attempts {
			t.Errorf("MaxAttempts %d: requests = %d", attempts, n)
		}
	}
}

func TestWaitsLongerThanMaxWaitAreHandedBack(t *testing.T) {
	tests := []struct {
		name  string
		fault githubtest.Fault
		check func(error) bool
	}{
		{"403 secondary, Retry-After 120", githubtest.Fault{Status: 403, RetryAfter: 2 * time.Minute},
			func(err error) bool {
				var e *gh.AbuseRateLimitError
				return errors.As(err, &e) && e.GetRetryAfter() == 2*time.Minute
			}},
		{"429, Retry-After 120", githubtest.Fault{Status: 429, RetryAfter: 2 * time.Minute},
			func(err error) bool { return statusOf(err) == 429 }},
		{"403 primary, reset in an hour", githubtest.Fault{Status: 403, ResetAt: time.Now().Add(time.Hour)},
			func(err error) bool {
				var e *gh.RateLimitError
				return errors.As(err, &e) && e.Rate.Remaining == 0
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t)
			f := tt.fault
			f.Method, f.PathPrefix = "GET", permPath
			srv.Inject(f)
			start := time.Now()
			err := getPermission(newApp(t, srv))
			if !tt.check(err) {
				t.Errorf("err = %#v, want go-github's typed error", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("gave up after %s, want at once", d)
			}
			if n := len(srv.RequestsTo("GET", permPath)); n != 1 {
				t.Errorf("requests = %d, want 1", n)
			}
		})
	}
}

func TestConnectionRefusedIsRetriedEvenForPOST(t *testing.T) {
	srv := newFake(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	dead := "http://" + l.Addr().String() + "/"
	l.Close()
	reg := prometheus.NewRegistry()
	app := newApp(t, srv, func(c *github.Config) { c.APIURL, c.Registerer = dead, reg })
	_, _, err = app.AppClient().Apps.RedeliverHookDelivery(context.Background(), 1)
	if err == nil {
		t.Fatalf("POST to a closed port succeeded")
	}
	if n := counter(t, reg, "POST", "error"); n != 4 {
		t.Errorf("POST attempts = %v, want 4 (nothing was sent, so retrying is safe)", n)
	}
}

func TestRequestsAreCounted(t *testing.T) {
	srv := newFake(t)
	reg := prometheus.NewRegistry()
	app := newApp(t, srv, func(c *github.Config) { c.Registerer = reg })
	srv.Inject(githubtest.Fault{Method: "GET", PathPrefix: permPath, Status: 502, Times: 1})
	if err := getPermission(app); err != nil {
		t.Fatalf("getPermission: %v", err)
	}
	for _, c := range []struct {
		method, code string
		want         float64
	}{{"GET", "502", 1}, {"GET", "200", 1}, {"POST", "201", 1}} {
		if n := counter(t, reg, c.method, c.code); n != c.want {
			t.Errorf("keystone_github_api_requests_total{method=%s,code=%s} = %v, want %v", c.method, c.code, n, c.want)
		}
	}
	if _, err := github.New(github.Config{AppID: srv.AppID, PrivateKeyPEM: srv.PrivateKeyPEM, Registerer: reg}); err != nil {
		t.Errorf("second App on the same registry: %v", err)
	}
}

// counter reads keystone_github_api_requests_total{method,code} from reg.
func counter(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "keystone_github_api_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func statuses(reqs []githubtest.Request) string {
	var b strings.Builder
	for _, r := range reqs {
		b.WriteString(r.Method + " " + r.Path + " → " + http.StatusText(r.Status) + "; ")
	}
	return b.String()
}

func TestRetryRenewsAnInstallationTokenDueForRefresh(t *testing.T) {
	// With a 62 s TTL ghinstallation wants a new token within two seconds;
	// a retry after a 3 s Retry-After must not reuse the old one.
	srv := newFake(t, githubtest.WithTokenTTL(62*time.Second))
	srv.Inject(githubtest.Fault{Method: "GET", PathPrefix: permPath, Status: 429, RetryAfter: 3 * time.Second, Times: 1})
	if err := getPermission(newApp(t, srv)); err != nil {
		t.Fatalf("GET after a 429: %v", err)
	}
	reqs := srv.RequestsTo("GET", permPath)
	if len(reqs) != 2 {
		t.Fatalf("requests = %v, want 2", statuses(reqs))
	}
	if reqs[0].Header.Get("Authorization") == reqs[1].Header.Get("Authorization") || srv.TokensIssued(inst) != 2 {
		t.Errorf("the retry reused the token due for refresh (tokens issued: %d)", srv.TokensIssued(inst))
	}
}
