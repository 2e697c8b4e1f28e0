package conversation

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/store"
)

// Environment is the GitHub environment of app's production deployments
// (SPEC §14).
func Environment(app string) string { return app }

// PreviewEnvironment is the GitHub environment of app's preview for pull
// request pr (SPEC §14): transient, not production.
func PreviewEnvironment(app string, pr int) string { return fmt.Sprintf("%s-pr-%d", app, pr) }

// deploymentState maps a deployment state to a GitHub deployment status
// state: superseded deployments never ran, and become inactive (SPEC §14).
func deploymentState(state string) string {
	switch state {
	case store.StateQueued:
		return "queued"
	case store.StateRunning:
		return "in_progress"
	case store.StateSucceeded:
		return "success"
	case store.StateFailed:
		return "failure"
	case store.StateSuperseded:
		return "inactive"
	}
	return "error"
}

// gitHubDeployment queues, in the transaction of the change, the GitHub
// Deployment of d (created at its first notification), the status of its
// new state (once per state: steps are the commit status's business), and,
// when d succeeded, the inactive status of the deployment it replaced:
// GitHub does not mark production deployments inactive by itself.
func (n *Notifier) gitHubDeployment(ctx context.Context, q *store.Queries, t outbox.Target, app store.App, d store.Deployment) error {
	env := Environment(app.Name)
	if app.Preview() {
		// A preview's row is named <app>-pr-<N>: its environment's name.
		env = app.Name
	}
	if _, err := outbox.EnqueueDeployment(ctx, q, t, outbox.Deployment{
		DeploymentID: d.ID, SHA: d.SHA, Environment: env, Production: !app.Preview(), Transient: app.Preview(),
		Description: fmt.Sprintf("Keystone %s #%d of %s by %s", d.Kind, d.ID, app.Name, d.Actor),
	}); err != nil {
		return fmt.Errorf("GitHub deployment of deployment %d: %w", d.ID, err)
	}
	if _, err := outbox.EnqueueDeploymentStatus(ctx, q, n.DeploymentStatus(app, d)); err != nil {
		return fmt.Errorf("GitHub deployment status of deployment %d: %w", d.ID, err)
	}
	if d.State != store.StateSucceeded {
		return nil
	}
	replaced, err := q.ActivateGitHubDeployment(ctx, d.ID)
	if err != nil {
		return err
	}
	for _, r := range replaced {
		st := outbox.DeploymentStatus{DeploymentID: r.DeploymentID, State: "inactive",
			Description: fmt.Sprintf("Replaced by #%d (%s)", d.ID, short(d.SHA)), LogURL: n.links.DeploymentURL(r.DeploymentID)}
		if _, err := outbox.EnqueueDeploymentStatus(ctx, q, st); err != nil {
			return fmt.Errorf("mark deployment %d inactive: %w", r.DeploymentID, err)
		}
	}
	return nil
}

// DeploymentStatus is the GitHub deployment status of deployment d of app
// (SPEC §14): log_url is its deployment page; environment_url the app's URL
// while it is on its way to or is serving there (a failed or refused
// deployment's URL would show another version).
func (n *Notifier) DeploymentStatus(app store.App, d store.Deployment) outbox.DeploymentStatus {
	st := outbox.DeploymentStatus{DeploymentID: d.ID, State: deploymentState(d.State), LogURL: n.links.DeploymentURL(d.ID)}
	switch st.State {
	case "queued":
		st.Description = "Queued"
	case "in_progress":
		st.Description = "Deploying " + short(d.SHA)
	default:
		st.Description = describe(d)
	}
	switch st.State {
	case "queued", "in_progress", "success":
		st.EnvironmentURL = n.links.AppURL(app)
	}
	return st
}

// PreviewRemoved implements deploy.PreviewNotifier: the removed preview's
// GitHub deployments that were serving become inactive (SPEC §14), in the
// transaction that removes it.
func (n *Notifier) PreviewRemoved(ctx context.Context, tx pgx.Tx, preview store.App, why string) error {
	q := store.NewQueries(tx)
	gone, err := q.DeactivateGitHubEnvironment(ctx, preview.Owner, preview.Repo, preview.Name)
	if err != nil {
		return err
	}
	for _, g := range gone {
		st := outbox.DeploymentStatus{DeploymentID: g.DeploymentID, State: "inactive",
			Description: "Preview removed: " + why, LogURL: n.links.DeploymentURL(g.DeploymentID)}
		if _, err := outbox.EnqueueDeploymentStatus(ctx, q, st); err != nil {
			return fmt.Errorf("mark deployment %d inactive: %w", g.DeploymentID, err)
		}
	}
	return nil
}
