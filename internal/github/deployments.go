package github

import (
	"context"
	"encoding/json"
	"fmt"

	gh "github.com/google/go-github/v66/github"
)

// NewDeployment is a GitHub Deployment to create. Keystone always sends
// auto_merge false and an empty required_contexts: GitHub would otherwise
// merge the default branch into the SHA, or refuse (409) while Keystone's
// own commit status is pending.
type NewDeployment struct {
	SHA                   string
	Environment           string
	Description           string
	ProductionEnvironment bool
	TransientEnvironment  bool
	// Payload is stored by GitHub as given; Keystone puts its marker there
	// to find a deployment it created without learning its id.
	Payload any
}

// Deployment is a GitHub Deployment as listed.
type Deployment struct {
	ID          int64
	SHA         string
	Environment string
	Payload     json.RawMessage
	// CreatorType is "Bot" for the App's deployments.
	CreatorType string
}

// DeploymentStatus is a status of a GitHub Deployment.
type DeploymentStatus struct {
	State          string // queued, in_progress, success, failure, error, inactive (or pending)
	Description    string
	LogURL         string
	EnvironmentURL string
}

// CreateDeployment creates a deployment of d.SHA and returns its id.
func (a *App) CreateDeployment(ctx context.Context, inst int64, owner, repo string, d NewDeployment) (int64, error) {
	req := &gh.DeploymentRequest{
		Ref: gh.String(d.SHA), Task: gh.String("deploy"), AutoMerge: gh.Bool(false), RequiredContexts: &[]string{},
		Environment: gh.String(d.Environment), Payload: d.Payload,
		ProductionEnvironment: gh.Bool(d.ProductionEnvironment), TransientEnvironment: gh.Bool(d.TransientEnvironment),
	}
	if d.Description != "" {
		req.Description = gh.String(d.Description)
	}
	var out *gh.Deployment
	err := a.withInstallation(inst, func(c *gh.Client) error {
		var err error
		out, _, err = c.Repositories.CreateDeployment(ctx, owner, repo, req)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("create deployment of %s/%s@%s in %s: %w", owner, repo, shortSHA(d.SHA), d.Environment, err)
	}
	return out.GetID(), nil
}

// FindDeployment returns the newest deployment of sha in environment for
// which match is true; found=false when none is. It reads at most maxPages
// pages of 100.
func (a *App) FindDeployment(ctx context.Context, inst int64, owner, repo, sha, environment string, match func(Deployment) bool) (d Deployment, found bool, err error) {
	const maxPages = 10
	opts := &gh.DeploymentsListOptions{SHA: sha, Environment: environment, ListOptions: gh.ListOptions{PerPage: 100}}
	for range maxPages {
		var page []*gh.Deployment
		var resp *gh.Response
		err := a.withInstallation(inst, func(c *gh.Client) error {
			var err error
			page, resp, err = c.Repositories.ListDeployments(ctx, owner, repo, opts)
			return err
		})
		if err != nil {
			return Deployment{}, false, fmt.Errorf("list deployments of %s/%s@%s in %s: %w", owner, repo, shortSHA(sha), environment, err)
		}
		for _, gd := range page {
			d := Deployment{ID: gd.GetID(), SHA: gd.GetSHA(), Environment: gd.GetEnvironment(), Payload: gd.Payload,
				CreatorType: gd.GetCreator().GetType()}
			if match(d) {
				return d, true, nil
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return Deployment{}, false, nil
}

// CreateDeploymentStatus posts a status on deployment id. auto_inactive is
// false: Keystone says itself which deployment stopped serving.
func (a *App) CreateDeploymentStatus(ctx context.Context, inst int64, owner, repo string, id int64, s DeploymentStatus) error {
	req := &gh.DeploymentStatusRequest{State: gh.String(s.State), AutoInactive: gh.Bool(false)}
	if s.Description != "" {
		req.Description = gh.String(s.Description)
	}
	if s.LogURL != "" {
		req.LogURL = gh.String(s.LogURL)
	}
	if s.EnvironmentURL != "" {
		req.EnvironmentURL = gh.String(s.EnvironmentURL)
	}
	err := a.withInstallation(inst, func(c *gh.Client) error {
		_, _, err := c.Repositories.CreateDeploymentStatus(ctx, owner, repo, id, req)
		return err
	})
	if err != nil {
		return fmt.Errorf("create status %s of deployment %d on %s/%s: %w", s.State, id, owner, repo, err)
	}
	return nil
}

// LatestDeploymentStatus returns the newest status of deployment id,
// found=false when it has none.
func (a *App) LatestDeploymentStatus(ctx context.Context, inst int64, owner, repo string, id int64) (s DeploymentStatus, found bool, err error) {
	var page []*gh.DeploymentStatus
	err = a.withInstallation(inst, func(c *gh.Client) error {
		var err error
		page, _, err = c.Repositories.ListDeploymentStatuses(ctx, owner, repo, id, &gh.ListOptions{PerPage: 1})
		return err
	})
	if err != nil {
		return DeploymentStatus{}, false, fmt.Errorf("list statuses of deployment %d on %s/%s: %w", id, owner, repo, err)
	}
	if len(page) == 0 {
		return DeploymentStatus{}, false, nil
	}
	st := page[0] // newest first
	return DeploymentStatus{State: st.GetState(), Description: st.GetDescription(), LogURL: st.GetLogURL(),
		EnvironmentURL: st.GetEnvironmentURL()}, true, nil
}
