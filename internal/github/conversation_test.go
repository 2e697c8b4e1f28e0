package github_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
)

const commitSHA = "0123456789abcdef0123456789abcdef01234567"

func TestCreateStatusAndLatestStatus(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv)
	ctx := context.Background()
	for _, s := range []github.Status{
		{State: "pending", Description: "Queued", Context: "keystone/web", TargetURL: "https://k.example/deployments/1"},
		{State: "pending", Description: "Queued", Context: "keystone/api"},
		{State: "success", Description: "Deployed in 1.0s · déployé ✓", Context: "keystone/web"},
	} {
		if err := app.CreateStatus(ctx, inst, owner, repoName, commitSHA, s); err != nil {
			t.Fatalf("CreateStatus(%+v): %v", s, err)
		}
	}
	got := srv.Statuses(fullRepo, commitSHA)
	if len(got) != 3 || got[0].TargetURL != "https://k.example/deployments/1" || got[2].Description != "Deployed in 1.0s · déployé ✓" {
		t.Fatalf("stored statuses = %+v", got)
	}
	latest, found, err := app.LatestStatus(ctx, inst, owner, repoName, commitSHA, "keystone/web")
	if err != nil || !found || latest.State != "success" {
		t.Fatalf("LatestStatus(web) = %+v, %v, %v; want the success", latest, found, err)
	}
	if _, found, err := app.LatestStatus(ctx, inst, owner, repoName, commitSHA, "keystone/none"); err != nil || found {
		t.Fatalf("LatestStatus(none) found=%v err=%v; want not found", found, err)
	}
}

func TestCreateStatusRefusedLikeGitHub(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv)
	tests := []struct {
		name string
		s    github.Status
		want string
	}{
		{"description of 141 characters", github.Status{State: "pending", Context: "c", Description: strings.Repeat("é", 141)}, "too long"},
		{"unknown state", github.Status{State: "running", Context: "c"}, "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := app.CreateStatus(context.Background(), inst, owner, repoName, commitSHA, tt.s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a 422 mentioning %q", err, tt.want)
			}
			if f := github.Classify(err); f.Kind != github.Permanent || f.Status != 422 {
				t.Errorf("Classify = %+v, want permanent 422", f)
			}
		})
	}
}

func TestCommentsCreateEditFind(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv)
	ctx := context.Background()
	for i := range 230 { // three pages of 100
		srv.AddComment(fullRepo, 7, "alice", fmt.Sprintf("chatter %d", i))
	}
	c, err := app.CreateComment(ctx, inst, owner, repoName, 7, "first <!-- keystone:thread=x -->")
	if err != nil {
		t.Fatalf("CreateComment: %v", err)
	}
	if c.User != srv.Slug+"[bot]" || c.UserType != "Bot" {
		t.Errorf("comment author = %q (%s), want the App's bot", c.User, c.UserType)
	}
	if err := app.EditComment(ctx, inst, owner, repoName, c.ID, "second <!-- keystone:thread=x -->"); err != nil {
		t.Fatalf("EditComment: %v", err)
	}
	found, ok, err := app.FindComment(ctx, inst, owner, repoName, 7, func(c github.Comment) bool {
		return strings.Contains(c.Body, "<!-- keystone:thread=x -->")
	})
	if err != nil || !ok || found.ID != c.ID || !strings.HasPrefix(found.Body, "second") {
		t.Fatalf("FindComment = %+v, %v, %v; want the edited comment %d", found, ok, err, c.ID)
	}
	if n := len(srv.RequestsTo("GET", "/repos/acme/web/issues/7/comments")); n != 3 {
		t.Errorf("FindComment read %d pages, want 3", n)
	}
	if _, ok, err := app.FindComment(ctx, inst, owner, repoName, 7, func(github.Comment) bool { return false }); ok || err != nil {
		t.Errorf("FindComment(no match) = %v, %v", ok, err)
	}
	err = app.EditComment(ctx, inst, owner, repoName, 99999999, "x")
	if !github.IsNotFound(err) {
		t.Errorf("EditComment(deleted) = %v, want a 404", err)
	}
	_, err = app.CreateComment(ctx, inst, owner, repoName, 7, strings.Repeat("ü", github.MaxCommentBody+1))
	if f := github.Classify(err); err == nil || f.Kind != github.Permanent || f.Status != 422 {
		t.Errorf("CreateComment(65537 characters) = %v (%+v), want a permanent 422", err, f)
	}
}

func TestReactionAndPulls(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv)
	ctx := context.Background()
	c := srv.AddComment(fullRepo, 3, "alice", "/keystone help")
	for range 2 {
		if err := app.CreateReaction(ctx, inst, owner, repoName, c.ID, "eyes"); err != nil {
			t.Fatalf("CreateReaction: %v", err)
		}
	}
	if r := srv.Reactions(fullRepo, c.ID); len(r) != 1 || r[0].Content != "eyes" {
		t.Fatalf("reactions = %+v, want one eyes", r)
	}
	srv.SetPullsForCommit(fullRepo, commitSHA, 12)
	prs, err := app.PullRequestsForCommit(ctx, inst, owner, repoName, commitSHA)
	if err != nil || len(prs) != 1 || prs[0].Number != 12 {
		t.Fatalf("PullRequestsForCommit = %+v, %v", prs, err)
	}
	prs, err = app.PullRequestsForCommit(ctx, inst, owner, repoName, strings.Repeat("f", 40))
	if err != nil || len(prs) != 0 {
		t.Fatalf("PullRequestsForCommit(no PR) = %+v, %v", prs, err)
	}
}

func TestHookDeliveriesListAndRedeliver(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv)
	ctx := context.Background()
	var added []githubtest.Delivery
	for i := range 5 {
		code := 200
		if i%2 == 0 {
			code = 502
		}
		added = append(added, srv.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: code, InstallationID: inst}))
	}
	var all []github.HookDelivery
	cursor, pages := "", 0
	for {
		page, next, err := app.ListHookDeliveries(ctx, cursor, 2)
		if err != nil {
			t.Fatalf("ListHookDeliveries: %v", err)
		}
		pages++
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 5 || pages != 3 {
		t.Fatalf("listed %d deliveries in %d pages, want 5 in 3", len(all), pages)
	}
	if all[0].GUID != added[4].GUID || all[0].Succeeded() || !all[1].Succeeded() {
		t.Errorf("not newest first or wrong status: %+v", all[:2])
	}
	if err := app.RedeliverHookDelivery(ctx, added[0].ID); err != nil {
		t.Fatalf("RedeliverHookDelivery: %v", err)
	}
	if r := srv.Redelivered(); len(r) != 1 || r[0].GUID != added[0].GUID || !r[0].Redelivery {
		t.Fatalf("redelivered = %+v", r)
	}
	for _, r := range srv.RequestsTo("", "/app/hook/") {
		if r.Auth != githubtest.AuthJWT {
			t.Errorf("%s %s authenticated with %s, want the App JWT", r.Method, r.Path, r.Auth)
		}
	}
	if err := app.RedeliverHookDelivery(ctx, 424242); !github.IsNotFound(err) {
		t.Errorf("RedeliverHookDelivery(unknown) = %v, want 404", err)
	}
}

// TestUnauthorizedRefreshesTokenOnce: a token GitHub stops accepting is
// replaced once and the call repeated; a second 401 is returned.
func TestUnauthorizedRefreshesTokenOnce(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv)
	ctx := context.Background()
	if err := app.CreateStatus(ctx, inst, owner, repoName, commitSHA, github.Status{State: "pending", Context: "c"}); err != nil {
		t.Fatal(err)
	}
	srv.RevokeTokens()
	if err := app.CreateStatus(ctx, inst, owner, repoName, commitSHA, github.Status{State: "success", Context: "c"}); err != nil {
		t.Fatalf("CreateStatus after revocation: %v", err)
	}
	if n := srv.TokensIssued(inst); n != 2 {
		t.Errorf("tokens issued = %d, want 2 (one refresh)", n)
	}
	var codes []int
	for _, r := range srv.RequestsTo("POST", "/repos/acme/web/statuses/") {
		codes = append(codes, r.Status)
	}
	if fmt.Sprint(codes) != "[201 401 201]" {
		t.Errorf("status posts answered %v, want [201 401 201]", codes)
	}
	if got := srv.Statuses(fullRepo, commitSHA); len(got) != 2 {
		t.Errorf("%d statuses stored, want 2", len(got))
	}

	// Tokens GitHub refuses as soon as they are issued: one retry only.
	expired := newFake(t, githubtest.WithTokenTTL(-time.Minute))
	_, err := newApp(t, expired).CollaboratorPermission(ctx, inst, owner, repoName, "alice")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("CollaboratorPermission with refused tokens = %v, want a 401", err)
	}
	if n := len(expired.RequestsTo("GET", "/repos/")); n != 2 {
		t.Errorf("%d permission requests, want 2 (one retry)", n)
	}
}

func TestClassify(t *testing.T) {
	srv := newFake(t)
	app := newApp(t, srv, func(c *github.Config) { c.MaxAttempts = 1 })
	ctx := context.Background()
	post := func() error {
		return app.CreateStatus(ctx, inst, owner, repoName, commitSHA, github.Status{State: "pending", Context: "c"})
	}
	reset := time.Now().Add(90 * time.Second)
	tests := []struct {
		name     string
		fault    githubtest.Fault
		kind     github.FailureKind
		status   int
		wait     time.Duration // lower bound when waitKnown
		waitKnow bool
	}{
		{"500", githubtest.Fault{Status: 500}, github.Transient, 500, 0, false},
		{"503 with Retry-After", githubtest.Fault{Status: 503, RetryAfter: 7 * time.Second}, github.Transient, 503, 7 * time.Second, true},
		{"429 with Retry-After", githubtest.Fault{Status: 429, RetryAfter: 120 * time.Second}, github.RateLimited, 429, 120 * time.Second, true},
		{"secondary 403 without wait", githubtest.Fault{Status: 403}, github.RateLimited, 403, 0, false},
		{"secondary 403 with Retry-After", githubtest.Fault{Status: 403, RetryAfter: 75 * time.Second}, github.RateLimited, 403, 75 * time.Second, true},
		{"primary 403 until reset", githubtest.Fault{Status: 403, ResetAt: reset, Times: 1}, github.RateLimited, 403, 80 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fault.Method, tt.fault.PathPrefix = "POST", "/repos/"
			if tt.fault.Times == 0 {
				tt.fault.Times = 1
			}
			srv.Inject(tt.fault)
			// A fresh client: go-github remembers limits per client.
			app = newApp(t, srv, func(c *github.Config) { c.MaxAttempts = 1 })
			err := post()
			if err == nil {
				t.Fatal("no error")
			}
			f := github.Classify(err)
			if f.Kind != tt.kind || f.Status != tt.status || f.WaitKnown != tt.waitKnow {
				t.Fatalf("Classify(%v) = %+v, want kind %s status %d waitKnown %v", err, f, tt.kind, tt.status, tt.waitKnow)
			}
			if tt.waitKnow && (f.Wait < tt.wait || f.Wait > tt.wait+15*time.Second) {
				t.Errorf("wait = %s, want about %s", f.Wait, tt.wait)
			}
		})
	}
	// A secondary limit without Retry-After: the next call goes to GitHub
	// (go-github alone would refuse it until x-ratelimit-reset, an hour).
	app = newApp(t, srv, func(c *github.Config) { c.MaxAttempts = 1 })
	srv.Inject(githubtest.Fault{Method: "POST", PathPrefix: "/repos/", Status: 403, Times: 1})
	if err := post(); github.Classify(err).Kind != github.RateLimited {
		t.Fatalf("secondary limit: err = %v", err)
	}
	if err := post(); err != nil {
		t.Fatalf("call after a secondary limit without Retry-After: %v", err)
	}

	// go-github refuses locally while a primary limit it saw has not reset.
	srv.Inject(githubtest.Fault{Method: "POST", PathPrefix: "/repos/", Status: 403, ResetAt: reset, Times: 1})
	_ = post()
	n := len(srv.Requests())
	err := post()
	if f := github.Classify(err); f.Kind != github.RateLimited || !f.WaitKnown || f.Wait < 60*time.Second {
		t.Errorf("local refusal classified %+v, want rate limited until the reset", f)
	}
	if len(srv.Requests()) != n {
		t.Errorf("a request reached GitHub while the limit had not reset")
	}
	if f := github.Classify(fmt.Errorf("x: %w", context.DeadlineExceeded)); f.Kind != github.Transient {
		t.Errorf("deadline classified %+v, want transient", f)
	}
	if f := github.Classify(errors.New("connection reset by peer")); f.Kind != github.Transient {
		t.Errorf("network error classified %+v, want transient", f)
	}
}
