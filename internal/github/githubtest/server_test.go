package githubtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gh "github.com/google/go-github/v66/github"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
)

const sha = "89abcdef0123456789abcdef0123456789abcdef"

// setup starts a fake with installation 42 on acme/web and 43 on other/api,
// and returns installation 42's go-github client.
func setup(t *testing.T, opts ...githubtest.Option) (*githubtest.Server, *github.App, *gh.Client) {
	t.Helper()
	srv := githubtest.New(t, opts...)
	srv.AddInstallation(42, "acme", "web")
	srv.AddInstallation(43, "other", "other/api")
	app, err := github.New(github.Config{
		AppID: srv.AppID, PrivateKeyPEM: srv.PrivateKeyPEM, APIURL: srv.URL, MaxAttempts: 1,
	})
	if err != nil {
		t.Fatalf("github.New: %v", err)
	}
	return srv, app, app.Installation(42)
}

// do sends method url with the Authorization header and returns the status
// and GitHub's "message".
func do(t *testing.T, method, url, authorization string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(`{}`))
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var body struct{ Message string }
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("%s %s: answer %q is not GitHub's JSON: %v", method, url, b, err)
	}
	return resp.StatusCode, body.Message
}

func statusOf(err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

func TestCredentialsAreCheckedPerEndpoint(t *testing.T) {
	clock := githubtest.NewClock(time.Now())
	srv, app, _ := setup(t, githubtest.WithTokenTTL(time.Second), githubtest.WithClock(clock.Now))
	ctx := context.Background()
	tok42, err := app.InstallationToken(ctx, 42)
	if err != nil {
		t.Fatalf("InstallationToken: %v", err)
	}
	perm := srv.URL + "repos/acme/web/collaborators/alice/permission"
	tests := []struct {
		name, method, url, auth string
		want                    int
		message                 string
	}{
		{"unknown route", "GET", srv.URL + "nope", "", 404, "Not Found"},
		{"unknown repo route", "GET", srv.URL + "repos/acme/web/nope", "token " + tok42, 404, "Not Found"},
		{"repo without credentials", "GET", perm, "", 401, "Requires authentication"},
		{"repo with garbage token", "GET", perm, "token nope", 401, "Bad credentials"},
		{"repo with another installation's token", "GET", srv.URL + "repos/other/api/collaborators/alice/permission", "token " + tok42, 404, "Not Found"},
		{"repo that does not exist", "GET", srv.URL + "repos/acme/nope/collaborators/alice/permission", "Bearer " + tok42, 404, "Not Found"},
		{"app endpoint with a token", "GET", srv.URL + "app", "token " + tok42, 401, "JSON web token"},
		{"app endpoint without credentials", "GET", srv.URL + "app", "", 401, "Requires authentication"},
		{"token request without a JWT", "POST", srv.URL + "app/installations/7/access_tokens", "", 401, "Requires authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := do(t, tt.method, tt.url, tt.auth)
			if status != tt.want || !strings.Contains(msg, tt.message) {
				t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.url, status, msg, tt.want, tt.message)
			}
		})
	}
	if _, ok := srv.ValidToken(tok42); !ok {
		t.Fatalf("fresh token refused")
	}
	clock.Advance(1100 * time.Millisecond)
	if _, ok := srv.ValidToken(tok42); ok {
		t.Errorf("token valid after its TTL")
	}
	if status, msg := do(t, "GET", perm, "token "+tok42); status != 401 || msg != "Bad credentials" {
		t.Errorf("expired token = %d %q, want 401 Bad credentials", status, msg)
	}
}

func TestGetInstallation(t *testing.T) {
	_, app, _ := setup(t)
	in, _, err := app.AppClient().Apps.GetInstallation(context.Background(), 42)
	if err != nil || in.GetID() != 42 || in.GetAccount().GetLogin() != "acme" {
		t.Errorf("GetInstallation(42) = %+v, %v; want acme's", in, err)
	}
	if _, _, err := app.AppClient().Apps.GetInstallation(context.Background(), 7); statusOf(err) != 404 {
		t.Errorf("GetInstallation(7) = %v, want 404", err)
	}
}

func TestJWTOnRepositoryEndpointIsRefused(t *testing.T) {
	srv, app, _ := setup(t)
	_, _, err := app.AppClient().Repositories.GetPermissionLevel(context.Background(), "acme", "web", "alice")
	if statusOf(err) != 403 {
		t.Errorf("App JWT on a repository endpoint: %v, want 403", err)
	}
	if reqs := srv.RequestsTo("GET", "/repos/"); len(reqs) != 1 || reqs[0].Auth != githubtest.AuthJWT {
		t.Errorf("recorded %+v, want one JWT request", reqs)
	}
}

func TestStatusesAreValidatedLikeGitHub(t *testing.T) {
	srv, _, client := setup(t)
	long := strings.Repeat("é", 141)
	tests := []struct {
		name   string
		sha    string
		status gh.RepoStatus
		want   int    // 201 or 422
		field  string // the validation error's field, if any
	}{
		{"valid", sha, gh.RepoStatus{State: gh.String("success"), Context: gh.String("keystone/web")}, 201, ""},
		{"140 two-byte characters", sha, gh.RepoStatus{State: gh.String("pending"), Description: gh.String(long[:280])}, 201, ""},
		{"upper-case sha", strings.ToUpper(sha), gh.RepoStatus{State: gh.String("error")}, 201, ""},
		{"unknown state", sha, gh.RepoStatus{State: gh.String("running")}, 422, "state"},
		{"missing state", sha, gh.RepoStatus{Description: gh.String("Queued")}, 422, ""},
		{"141 characters", sha, gh.RepoStatus{State: gh.String("failure"), Description: gh.String(long)}, 422, "description"},
		{"short sha", "89abcdef", gh.RepoStatus{State: gh.String("success")}, 422, ""},
		{"not hex", strings.Repeat("z", 40), gh.RepoStatus{State: gh.String("success")}, 422, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, resp, err := client.Repositories.CreateStatus(context.Background(), "acme", "web", tt.sha, &tt.status)
			if tt.want == 201 {
				if err != nil || resp.StatusCode != 201 || st.GetState() != tt.status.GetState() || st.GetCreator().GetLogin() != srv.Slug+"[bot]" {
					t.Fatalf("CreateStatus = %+v, %v; want 201 by the bot", st, err)
				}
				return
			}
			var er *gh.ErrorResponse
			if !errors.As(err, &er) || er.Response.StatusCode != 422 {
				t.Fatalf("CreateStatus = %v, want 422", err)
			}
			if tt.field != "" && (len(er.Errors) != 1 || er.Errors[0].Field != tt.field || er.Errors[0].Resource != "Status") {
				t.Errorf("validation errors = %+v, want one on Status.%s", er.Errors, tt.field)
			}
		})
	}
	got := srv.Statuses("acme/web", sha)
	if len(got) != 3 || got[0].Context != "keystone/web" || got[1].Context != "default" {
		t.Errorf("stored statuses = %+v, want the 3 valid ones, context defaulting to \"default\"", got)
	}
}

func TestStatusesPerSHAAndContextAreCapped(t *testing.T) {
	srv, _, client := setup(t)
	ctx := context.Background()
	for i := range 1000 {
		if _, _, err := client.Repositories.CreateStatus(ctx, "acme", "web", sha, &gh.RepoStatus{State: gh.String("pending"), Context: gh.String("c")}); err != nil {
			t.Fatalf("status %d: %v", i+1, err)
		}
	}
	_, _, err := client.Repositories.CreateStatus(ctx, "acme", "web", sha, &gh.RepoStatus{State: gh.String("success"), Context: gh.String("c")})
	if statusOf(err) != 422 || !strings.Contains(err.Error(), "maximum number of statuses") {
		t.Errorf("status 1001 = %v, want 422", err)
	}
	if _, _, err := client.Repositories.CreateStatus(ctx, "acme", "web", sha, &gh.RepoStatus{State: gh.String("success"), Context: gh.String("d")}); err != nil {
		t.Errorf("another context: %v", err)
	}
	if n := len(srv.Statuses("acme/web", sha)); n != 1001 {
		t.Errorf("stored %d statuses, want 1001", n)
	}
}

func TestCommentsLikeGitHub(t *testing.T) {
	srv, _, client := setup(t)
	ctx := context.Background()
	user := srv.AddComment("acme/web", 3, "alice", "/keystone deploy")
	for i := range 4 {
		c, resp, err := client.Issues.CreateComment(ctx, "acme", "web", 3, &gh.IssueComment{Body: gh.String(strings.Repeat("x", i+1))})
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("CreateComment: %v", err)
		}
		if c.GetUser().GetLogin() != srv.Slug+"[bot]" || c.GetUser().GetType() != "Bot" {
			t.Fatalf("comment author = %+v, want the App's bot", c.GetUser())
		}
	}
	// go-github v66's IssueComment has no performed_via_github_app: read it raw.
	req, _ := client.NewRequest("GET", "repos/acme/web/issues/3/comments", nil)
	var raw []struct {
		Via *gh.App `json:"performed_via_github_app"`
	}
	if _, err := client.Do(ctx, req, &raw); err != nil || len(raw) != 5 || raw[0].Via != nil || raw[1].Via.GetSlug() != srv.Slug {
		t.Errorf("performed_via_github_app = %+v, %v; want null for alice, the App for the bot", raw, err)
	}
	var bodies []string
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 2}}
	for pages := 0; ; pages++ {
		page, resp, err := client.Issues.ListComments(ctx, "acme", "web", 3, opts)
		if err != nil {
			t.Fatalf("ListComments: %v", err)
		}
		if pages == 0 && resp.LastPage != 3 {
			t.Errorf("first page: LastPage = %d, want 3", resp.LastPage)
		}
		for _, c := range page {
			bodies = append(bodies, c.GetBody())
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if strings.Join(bodies, ",") != "/keystone deploy,x,xx,xxx,xxxx" {
		t.Errorf("listed bodies = %q, want oldest first across pages", bodies)
	}
	edited, _, err := client.Issues.EditComment(ctx, "acme", "web", user.ID, &gh.IssueComment{Body: gh.String("edited")})
	if err != nil || edited.GetBody() != "edited" || srv.Comments("acme/web", 3)[0].Body != "edited" {
		t.Errorf("EditComment = %+v, %v; want the body changed", edited, err)
	}
	bad := map[string]*gh.IssueComment{
		"empty":         {Body: gh.String("")},
		"blank":         {Body: gh.String(" \n")},
		"missing":       {},
		"65537 letters": {Body: gh.String(strings.Repeat("é", 65537))},
	}
	for name, c := range bad {
		if _, _, err := client.Issues.CreateComment(ctx, "acme", "web", 3, c); statusOf(err) != 422 {
			t.Errorf("%s body: %v, want 422", name, err)
		}
	}
	if _, _, err := client.Issues.CreateComment(ctx, "acme", "web", 3, &gh.IssueComment{Body: gh.String(strings.Repeat("é", 65536))}); err != nil {
		t.Errorf("65536-character body: %v", err)
	}
	if _, _, err := client.Issues.EditComment(ctx, "acme", "web", 999999, &gh.IssueComment{Body: gh.String("x")}); statusOf(err) != 404 {
		t.Errorf("editing an unknown comment: %v, want 404", err)
	}
}

func TestReactions(t *testing.T) {
	srv, _, client := setup(t)
	ctx := context.Background()
	c := srv.AddComment("acme/web", 3, "alice", "/keystone status")
	for i, want := range []int{201, 200} {
		r, resp, err := client.Reactions.CreateIssueCommentReaction(ctx, "acme", "web", c.ID, "eyes")
		if err != nil || resp.StatusCode != want || r.GetContent() != "eyes" {
			t.Fatalf("reaction %d = %+v, %v; want %d", i, r, err, want)
		}
	}
	if _, _, err := client.Reactions.CreateIssueCommentReaction(ctx, "acme", "web", c.ID, "thumbsup"); statusOf(err) != 422 {
		t.Errorf("unknown content: %v, want 422", err)
	}
	if _, _, err := client.Reactions.CreateIssueCommentReaction(ctx, "acme", "web", 999999, "eyes"); statusOf(err) != 404 {
		t.Errorf("unknown comment: %v, want 404", err)
	}
	got := srv.Reactions("acme/web", c.ID)
	if len(got) != 1 || got[0].Content != "eyes" || got[0].User != srv.Slug+"[bot]" {
		t.Errorf("reactions = %+v, want one eyes by the bot", got)
	}
}

func TestPullsForCommit(t *testing.T) {
	srv, _, client := setup(t)
	srv.SetPullsForCommit("acme/web", sha, 5, 9)
	prs, _, err := client.PullRequests.ListPullRequestsWithCommit(context.Background(), "acme", "web", sha, nil)
	if err != nil || len(prs) != 2 || prs[0].GetNumber() != 5 || prs[1].GetNumber() != 9 || prs[0].GetHead().GetSHA() != sha {
		t.Fatalf("ListPullRequestsWithCommit = %+v, %v; want #5 and #9", prs, err)
	}
	prs, _, err = client.PullRequests.ListPullRequestsWithCommit(context.Background(), "acme", "web", strings.Repeat("0", 40), nil)
	if err != nil || len(prs) != 0 {
		t.Errorf("commit without PRs = %+v, %v; want none", prs, err)
	}
}

func TestDeliveriesAndRedelivery(t *testing.T) {
	srv, app, _ := setup(t)
	ctx := context.Background()
	var added []githubtest.Delivery
	for i := range 5 {
		code := 200
		if i%2 == 0 {
			code = 503
		}
		added = append(added, srv.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: code, InstallationID: 42, RepositoryID: srv.RepositoryID("acme/web")}))
	}
	redelivered := make(chan githubtest.Delivery, 1)
	srv.OnRedeliver(func(d githubtest.Delivery) { redelivered <- d })

	var ids []int64
	opts := &gh.ListCursorOptions{PerPage: 2}
	for {
		page, resp, err := app.AppClient().Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			t.Fatalf("ListHookDeliveries: %v", err)
		}
		for _, d := range page {
			ids = append(ids, d.GetID())
			if d.GetInstallationID() != 42 || d.GetEvent() != "push" || d.GetGUID() == "" || d.DeliveredAt == nil {
				t.Errorf("delivery %+v lacks fields", d)
			}
		}
		if resp.Cursor == "" {
			break
		}
		opts.Cursor = resp.Cursor
	}
	if len(ids) != 5 || ids[0] != added[4].ID || ids[4] != added[0].ID {
		t.Fatalf("listed ids %v, want the 5 added, newest first", ids)
	}

	_, _, err := app.AppClient().Apps.RedeliverHookDelivery(ctx, added[0].ID)
	var accepted *gh.AcceptedError
	if !errors.As(err, &accepted) {
		t.Fatalf("RedeliverHookDelivery = %v, want go-github's AcceptedError for 202", err)
	}
	select {
	case d := <-redelivered:
		if d.GUID != added[0].GUID || !d.Redelivery || d.ID == added[0].ID {
			t.Errorf("redelivery %+v, want a new delivery with GUID %s", d, added[0].GUID)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("OnRedeliver not called")
	}
	if n := len(srv.Redelivered()); n != 1 {
		t.Errorf("Redelivered = %d, want 1", n)
	}
	if _, _, err := app.AppClient().Apps.RedeliverHookDelivery(ctx, 123456789); statusOf(err) != 404 {
		t.Errorf("redelivering an unknown delivery: %v, want 404", err)
	}
}

func TestFaultsEnd(t *testing.T) {
	clock := githubtest.NewClock(time.Now())
	srv, _, client := setup(t, githubtest.WithClock(clock.Now))
	ctx := context.Background()
	get := func() int {
		_, resp, err := client.Repositories.GetPermissionLevel(ctx, "acme", "web", "acme")
		if err != nil {
			return statusOf(err)
		}
		return resp.StatusCode
	}
	srv.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 502, Times: 2})
	if got := []int{get(), get(), get()}; got[0] != 502 || got[1] != 502 || got[2] != 200 {
		t.Errorf("Times 2: %v, want 502 502 200", got)
	}
	srv.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 500, Until: clock.Now().Add(300 * time.Millisecond)})
	if got := get(); got != 500 {
		t.Errorf("during Until: %d, want 500", got)
	}
	clock.Advance(350 * time.Millisecond)
	if got := get(); got != 200 {
		t.Errorf("after Until: %d, want 200", got)
	}
	remove := srv.Inject(githubtest.Fault{Method: "GET", Status: 503})
	if got := get(); got != 503 {
		t.Errorf("until removed: %d, want 503", got)
	}
	remove()
	if got := get(); got != 200 {
		t.Errorf("after removal: %d, want 200", got)
	}
}
