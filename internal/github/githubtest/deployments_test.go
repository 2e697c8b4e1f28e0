package githubtest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	gh "github.com/google/go-github/v66/github"
)

const sha2 = "0123456789abcdef0123456789abcdef01234567"

// TestDeploymentCreationRules: the fake refuses a deployment as GitHub does
// when auto_merge would merge or commit statuses are not all green, and
// when the ref is missing or unknown.
func TestDeploymentCreationRules(t *testing.T) {
	srv, app, c := setup(t)
	ctx := context.Background()
	status := func(sha, context, state string) {
		t.Helper()
		if _, _, err := c.Repositories.CreateStatus(ctx, "acme", "web", sha,
			&gh.RepoStatus{State: gh.String(state), Context: gh.String(context)}); err != nil {
			t.Fatalf("CreateStatus: %v", err)
		}
	}
	status(sha, "keystone/web", "pending") // Keystone's own status while it deploys
	status(sha2, "ci", "success")
	status(sha2, "lint", "failure")
	status(sha2, "lint", "success") // the newest status of a context counts

	no := gh.Bool(false)
	none := &[]string{}
	tests := []struct {
		name string
		req  gh.DeploymentRequest
		want int
	}{
		{"Keystone's request", gh.DeploymentRequest{Ref: gh.String(sha), AutoMerge: no, RequiredContexts: none, Environment: gh.String("web")}, 201},
		{"auto_merge left to its default", gh.DeploymentRequest{Ref: gh.String(sha), RequiredContexts: none}, 409},
		{"auto_merge true", gh.DeploymentRequest{Ref: gh.String(sha), AutoMerge: gh.Bool(true), RequiredContexts: none}, 409},
		{"required_contexts absent, a status pending", gh.DeploymentRequest{Ref: gh.String(sha), AutoMerge: no}, 409},
		{"required_contexts absent, every status green", gh.DeploymentRequest{Ref: gh.String(sha2), AutoMerge: no}, 201},
		{"a required context pending", gh.DeploymentRequest{Ref: gh.String(sha), AutoMerge: no, RequiredContexts: &[]string{"keystone/web"}}, 409},
		{"a required context missing", gh.DeploymentRequest{Ref: gh.String(sha2), AutoMerge: no, RequiredContexts: &[]string{"build"}}, 409},
		{"required contexts green", gh.DeploymentRequest{Ref: gh.String(sha2), AutoMerge: no, RequiredContexts: &[]string{"ci", "lint"}}, 201},
		{"no ref", gh.DeploymentRequest{AutoMerge: no, RequiredContexts: none}, 422},
		{"a ref the fake cannot resolve", gh.DeploymentRequest{Ref: gh.String("main"), AutoMerge: no, RequiredContexts: none}, 422},
	}
	created := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := c.Repositories.CreateDeployment(ctx, "acme", "web", &tt.req)
			got := statusOf(err)
			if err == nil {
				got = resp.StatusCode
				created++
			}
			if got != tt.want {
				t.Fatalf("answered %d (%v), want %d", got, err, tt.want)
			}
		})
	}
	if n := len(srv.Deployments("acme/web")); n != created {
		t.Errorf("%d deployments stored, %d created: a refused request left one behind", n, created)
	}
	other := app.Installation(43)
	if _, _, err := other.Repositories.ListDeployments(ctx, "acme", "web", nil); statusOf(err) != 404 {
		t.Errorf("installation 43 listing acme/web's deployments: %v, want 404", err)
	}
}

// TestDeploymentDefaultsAndStatusRules: defaults of a new deployment,
// status validation, listing per environment and SHA, statuses per
// deployment newest first, and auto_inactive sparing production.
func TestDeploymentDefaultsAndStatusRules(t *testing.T) {
	srv, _, c := setup(t)
	ctx := context.Background()
	create := func(ref, env string, prod, transient *bool) *gh.Deployment {
		t.Helper()
		d, _, err := c.Repositories.CreateDeployment(ctx, "acme", "web", &gh.DeploymentRequest{Ref: gh.String(ref),
			AutoMerge: gh.Bool(false), RequiredContexts: &[]string{}, Environment: gh.String(env),
			ProductionEnvironment: prod, TransientEnvironment: transient, Payload: map[string]any{"keystone_deployment_id": 7}})
		if err != nil {
			t.Fatalf("CreateDeployment: %v", err)
		}
		return d
	}
	web1 := create(sha, "web", gh.Bool(true), nil)
	if web1.GetTask() != "deploy" || web1.GetEnvironment() != "web" || web1.GetSHA() != sha ||
		!strings.Contains(string(web1.Payload), `"keystone_deployment_id":7`) || web1.GetCreator().GetType() != "Bot" {
		t.Errorf("deployment = %+v", web1)
	}
	prod := create(sha, "production", nil, nil)
	web2 := create(sha2, "web", gh.Bool(true), nil)
	pr1 := create(sha, "web-pr-5", nil, gh.Bool(true))
	stage1 := create(sha, "staging", nil, nil)
	stage2 := create(sha2, "staging", nil, nil)
	kinds := map[int64]string{}
	for _, d := range srv.Deployments("acme/web") {
		kinds[d.ID] = fmt.Sprintf("production=%t transient=%t", d.ProductionEnvironment, d.TransientEnvironment)
	}
	for id, want := range map[int64]string{web1.GetID(): "production=true transient=false",
		prod.GetID(): "production=true transient=false", pr1.GetID(): "production=false transient=true",
		stage1.GetID(): "production=false transient=false"} {
		if kinds[id] != want {
			t.Errorf("deployment %d: %s, want %s", id, kinds[id], want)
		}
	}

	post := func(id int64, st gh.DeploymentStatusRequest) int {
		t.Helper()
		_, resp, err := c.Repositories.CreateDeploymentStatus(ctx, "acme", "web", id, &st)
		if err != nil {
			return statusOf(err)
		}
		return resp.StatusCode
	}
	checks := []struct {
		name string
		id   int64
		st   gh.DeploymentStatusRequest
		want int
	}{
		{"queued", web1.GetID(), gh.DeploymentStatusRequest{State: gh.String("queued"), LogURL: gh.String("http://k/deployments/1")}, 201},
		{"in_progress", web1.GetID(), gh.DeploymentStatusRequest{State: gh.String("in_progress")}, 201},
		{"success", web1.GetID(), gh.DeploymentStatusRequest{State: gh.String("success"),
			EnvironmentURL: gh.String("http://web.example/"), Description: gh.String(strings.Repeat("é", 140))}, 201},
		{"a commit status state", web1.GetID(), gh.DeploymentStatusRequest{State: gh.String("running")}, 422},
		{"no state", web1.GetID(), gh.DeploymentStatusRequest{Description: gh.String("x")}, 422},
		{"description of 141 characters", web1.GetID(), gh.DeploymentStatusRequest{State: gh.String("error"),
			Description: gh.String(strings.Repeat("é", 141))}, 422},
		{"unknown deployment", 999999, gh.DeploymentStatusRequest{State: gh.String("success")}, 404},
		{"production success", web2.GetID(), gh.DeploymentStatusRequest{State: gh.String("success")}, 201},
		{"staging success", stage1.GetID(), gh.DeploymentStatusRequest{State: gh.String("success")}, 201},
		{"next staging success", stage2.GetID(), gh.DeploymentStatusRequest{State: gh.String("success")}, 201},
	}
	for _, tt := range checks {
		if got := post(tt.id, tt.st); got != tt.want {
			t.Errorf("%s: answered %d, want %d", tt.name, got, tt.want)
		}
	}

	list, _, err := c.Repositories.ListDeployments(ctx, "acme", "web", &gh.DeploymentsListOptions{SHA: sha, Environment: "web"})
	if err != nil || len(list) != 1 || list[0].GetID() != web1.GetID() {
		t.Errorf("deployments of %s in web = %v (%v), want only %d", sha[:7], list, err, web1.GetID())
	}
	all, _, err := c.Repositories.ListDeployments(ctx, "acme", "web", &gh.DeploymentsListOptions{Environment: "web"})
	if err != nil || len(all) != 2 || all[0].GetID() != web2.GetID() {
		t.Errorf("deployments in web = %v (%v), want web2 then web1", all, err)
	}
	sts, _, err := c.Repositories.ListDeploymentStatuses(ctx, "acme", "web", web1.GetID(), nil)
	var states []string
	for _, s := range sts {
		states = append(states, s.GetState())
	}
	if err != nil || strings.Join(states, " ") != "success in_progress queued" {
		t.Errorf("statuses of web1, newest first = %v (%v)", states, err)
	}
	if sts[0].GetEnvironmentURL() != "http://web.example/" || sts[2].GetLogURL() != "http://k/deployments/1" {
		t.Errorf("urls not kept: %+v", sts)
	}

	// GitHub marks earlier successes inactive only outside production and
	// transient environments.
	last := func(id int64) string {
		for _, d := range srv.Deployments("acme/web") {
			if d.ID == id && len(d.Statuses) > 0 {
				return d.Statuses[len(d.Statuses)-1].State
			}
		}
		return ""
	}
	if got := last(web1.GetID()); got != "success" {
		t.Errorf("production web1 ends %q after web2's success, want success (GitHub leaves it)", got)
	}
	if got := last(stage1.GetID()); got != "inactive" {
		t.Errorf("staging1 ends %q after staging2's success, want inactive", got)
	}
	if got := last(pr1.GetID()); got != "" {
		t.Errorf("preview has status %q, want none", got)
	}
}
