package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/store"
)

// Deployment is the GitHub Deployment of Keystone deployment DeploymentID:
// its SHA in Environment, created with auto_merge false and no required
// contexts (SPEC §14).
type Deployment struct {
	DeploymentID int64  `json:"deployment_id"`
	SHA          string `json:"sha"`
	Environment  string `json:"environment"`
	Description  string `json:"description"`
	Production   bool   `json:"production_environment,omitempty"`
	Transient    bool   `json:"transient_environment,omitempty"`
}

// DeploymentStatus is a status of the GitHub Deployment of Keystone
// deployment DeploymentID.
type DeploymentStatus struct {
	DeploymentID   int64  `json:"deployment_id"`
	State          string `json:"state"` // queued, in_progress, success, failure, error or inactive
	Description    string `json:"description"`
	LogURL         string `json:"log_url,omitempty"`
	EnvironmentURL string `json:"environment_url,omitempty"`
}

var (
	environmentPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$`)
	deploymentStatusStates = map[string]bool{
		"queued": true, "in_progress": true, "success": true, "failure": true, "error": true, "inactive": true,
	}
)

// deploymentKey is the ordering key of everything said about an
// environment's deployments: creations and statuses go out in the order
// they happened, so the replaced deployment turns inactive after its
// successor succeeded, and a status never precedes its deployment.
func deploymentKey(t Target, environment string) string {
	return "deployment:" + t.fullName() + ":" + environment
}

// EnqueueDeployment records d as the GitHub Deployment of its Keystone
// deployment and queues its creation, in q's transaction. A deployment that
// has one recorded already is left as it is (queued=false): each Keystone
// deployment is one GitHub Deployment.
func EnqueueDeployment(ctx context.Context, q *store.Queries, t Target, d Deployment) (queued bool, err error) {
	if err := t.validate(); err != nil {
		return false, err
	}
	d.SHA = strings.ToLower(d.SHA)
	switch {
	case d.DeploymentID <= 0:
		return false, fmt.Errorf("outbox: deployment: no Keystone deployment id")
	case !shaPattern.MatchString(d.SHA):
		return false, fmt.Errorf("outbox: deployment %d: SHA %q is not 40 hex digits", d.DeploymentID, d.SHA)
	case !environmentPattern.MatchString(d.Environment):
		return false, fmt.Errorf("outbox: deployment %d: environment %q is not [A-Za-z0-9._/-]{1,255}", d.DeploymentID, d.Environment)
	case d.Production && d.Transient:
		return false, fmt.Errorf("outbox: deployment %d: an environment is production or transient, not both", d.DeploymentID)
	}
	d.Description = Cut(d.Description, github.MaxStatusDescription)
	_, added, err := q.AddGitHubDeployment(ctx, store.GitHubDeployment{DeploymentID: d.DeploymentID,
		InstallationID: t.InstallationID, Owner: t.Owner, Repo: t.Repo, Environment: d.Environment})
	if err != nil || !added {
		return false, err
	}
	return enqueue(ctx, q, t, KindDeployment, deploymentKey(t, d.Environment), d)
}

// EnqueueDeploymentStatus queues s on the GitHub Deployment of its Keystone
// deployment, in q's transaction, unless its state is the last one queued
// (queued=false): a state is posted once, not per step. The deployment must
// have been queued with EnqueueDeployment. The description is cut to 140
// characters.
func EnqueueDeploymentStatus(ctx context.Context, q *store.Queries, s DeploymentStatus) (queued bool, err error) {
	if !deploymentStatusStates[s.State] {
		return false, fmt.Errorf("outbox: deployment status: unknown state %q", s.State)
	}
	g, err := q.GitHubDeployment(ctx, s.DeploymentID)
	if err != nil {
		return false, fmt.Errorf("outbox: deployment status: %w", err)
	}
	if g.State == s.State {
		return false, nil
	}
	if err := q.SetGitHubDeploymentState(ctx, s.DeploymentID, s.State); err != nil {
		return false, err
	}
	s.Description = Cut(s.Description, github.MaxStatusDescription)
	t := Target{InstallationID: g.InstallationID, Owner: g.Owner, Repo: g.Repo}
	return enqueue(ctx, q, t, KindDeploymentStatus, deploymentKey(t, g.Environment), s)
}

// deploymentMarker is the payload of Keystone's GitHub Deployments, by which
// a creation whose answer was lost is found again instead of repeated.
type deploymentMarker struct {
	DeploymentID int64  `json:"keystone_deployment_id"`
	Instance     string `json:"keystone_instance"`
}

// sendDeployment creates a GitHub Deployment. If a creation was started
// before (its answer lost, or the process died), the deployments of the SHA
// in the environment are searched for Keystone's marker first.
func (d *Dispatcher) sendDeployment(ctx context.Context, e store.OutboxEntry, p Deployment, prev int) (string, error) {
	g, err := d.store.GitHubDeployment(ctx, p.DeploymentID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.OutboxSkipped, nil // its deployment was deleted
	case err != nil:
		return "", err
	case g.GitHubID != 0:
		return store.OutboxSent, nil // created; only recording the entry was lost
	}
	instance, err := d.store.InstanceID(ctx)
	if err != nil {
		return "", err
	}
	marker := deploymentMarker{DeploymentID: p.DeploymentID, Instance: instance}
	if prev > 0 {
		found, ok, err := d.github.FindDeployment(ctx, e.InstallationID, e.Owner, e.Repo, p.SHA, p.Environment,
			func(gd github.Deployment) bool {
				var m deploymentMarker
				return gd.CreatorType == "Bot" && json.Unmarshal(gd.Payload, &m) == nil && m == marker
			})
		if err != nil {
			return "", err
		}
		if ok {
			return store.OutboxSent, d.store.SetGitHubDeploymentID(ctx, p.DeploymentID, found.ID)
		}
	}
	id, err := d.github.CreateDeployment(ctx, e.InstallationID, e.Owner, e.Repo, github.NewDeployment{
		SHA: p.SHA, Environment: p.Environment, Description: p.Description,
		ProductionEnvironment: p.Production, TransientEnvironment: p.Transient, Payload: marker,
	})
	if err != nil {
		return "", err
	}
	return store.OutboxSent, d.store.SetGitHubDeploymentID(ctx, p.DeploymentID, id)
}

// sendDeploymentStatus posts a deployment status. After an attempt of
// unknown outcome it first reads the deployment's newest status: if it is
// this one, it landed (one key sends one entry at a time, and a state is
// queued once per deployment). A deployment GitHub never created (its
// creation failed for good) gets no status: the entry is skipped.
func (d *Dispatcher) sendDeploymentStatus(ctx context.Context, e store.OutboxEntry, s DeploymentStatus, prev int) (string, error) {
	g, err := d.store.GitHubDeployment(ctx, s.DeploymentID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.OutboxSkipped, nil
	case err != nil:
		return "", err
	case g.GitHubID == 0:
		d.log.Warn("outbox: deployment status of a GitHub deployment never created: skipped",
			slog.Int64("outbox_id", e.ID), slog.Int64("deployment_id", s.DeploymentID))
		return store.OutboxSkipped, nil
	}
	want := github.DeploymentStatus{State: s.State, Description: s.Description, LogURL: s.LogURL, EnvironmentURL: s.EnvironmentURL}
	if prev > 0 {
		got, found, err := d.github.LatestDeploymentStatus(ctx, e.InstallationID, e.Owner, e.Repo, g.GitHubID)
		if err != nil {
			return "", err
		}
		if found && got == want {
			return store.OutboxSent, nil
		}
	}
	return store.OutboxSent, d.github.CreateDeploymentStatus(ctx, e.InstallationID, e.Owner, e.Repo, g.GitHubID, want)
}
