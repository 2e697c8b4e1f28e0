package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// GitHubDeployment is the GitHub Deployment of one Keystone deployment.
type GitHubDeployment struct {
	DeploymentID   int64
	InstallationID int64
	Owner, Repo    string
	Environment    string
	GitHubID       int64  // 0 until GitHub answered the creation
	State          string // the last status queued; "" before the first
	Active         bool   // what its environment serves, as last told to GitHub
}

const githubDeploymentColumns = `deployment_id, installation_id, owner, repo, environment, COALESCE(github_id, 0), state, active`

func scanGitHubDeployment(row pgx.Row) (GitHubDeployment, error) {
	var g GitHubDeployment
	err := row.Scan(&g.DeploymentID, &g.InstallationID, &g.Owner, &g.Repo, &g.Environment, &g.GitHubID, &g.State, &g.Active)
	return g, err
}

// AddGitHubDeployment records g for its deployment unless one is recorded
// already; added tells which. It returns the row as stored.
func (q *Queries) AddGitHubDeployment(ctx context.Context, g GitHubDeployment) (stored GitHubDeployment, added bool, err error) {
	stored, err = scanGitHubDeployment(q.db.QueryRow(ctx, `
		INSERT INTO github_deployments (deployment_id, installation_id, owner, repo, environment)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (deployment_id) DO NOTHING
		RETURNING `+githubDeploymentColumns,
		g.DeploymentID, g.InstallationID, noNUL(g.Owner), noNUL(g.Repo), noNUL(g.Environment)))
	if err == nil {
		return stored, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return GitHubDeployment{}, false, fmt.Errorf("record GitHub deployment of deployment %d: %w", g.DeploymentID, err)
	}
	stored, err = q.GitHubDeployment(ctx, g.DeploymentID)
	return stored, false, err
}

// GitHubDeployment returns the GitHub Deployment of deployment id, or
// ErrNotFound.
func (q *Queries) GitHubDeployment(ctx context.Context, deploymentID int64) (GitHubDeployment, error) {
	g, err := scanGitHubDeployment(q.db.QueryRow(ctx, `SELECT `+githubDeploymentColumns+`
		FROM github_deployments WHERE deployment_id = $1`, deploymentID))
	if err != nil {
		return GitHubDeployment{}, notFound(err, fmt.Sprintf("GitHub deployment of deployment %d", deploymentID))
	}
	return g, nil
}

// SetGitHubDeploymentID records GitHub's id of deployment id's GitHub
// Deployment.
func (q *Queries) SetGitHubDeploymentID(ctx context.Context, deploymentID, githubID int64) error {
	if _, err := q.db.Exec(ctx, `UPDATE github_deployments SET github_id = $2, updated_at = now()
		WHERE deployment_id = $1`, deploymentID, githubID); err != nil {
		return fmt.Errorf("record GitHub deployment %d of deployment %d: %w", githubID, deploymentID, err)
	}
	return nil
}

// SetGitHubDeploymentState records state as the last status queued for
// deployment id's GitHub Deployment.
func (q *Queries) SetGitHubDeploymentState(ctx context.Context, deploymentID int64, state string) error {
	if _, err := q.db.Exec(ctx, `UPDATE github_deployments SET state = $2, updated_at = now()
		WHERE deployment_id = $1`, deploymentID, noNUL(state)); err != nil {
		return fmt.Errorf("record GitHub deployment state of deployment %d: %w", deploymentID, err)
	}
	return nil
}

// ActivateGitHubDeployment makes deployment id's GitHub Deployment the one
// its environment serves and returns those it replaces (no longer active),
// whose owner must now tell GitHub they are inactive.
func (q *Queries) ActivateGitHubDeployment(ctx context.Context, deploymentID int64) ([]GitHubDeployment, error) {
	rows, err := q.db.Query(ctx, `
		UPDATE github_deployments o SET active = false, updated_at = now()
		FROM github_deployments n
		WHERE n.deployment_id = $1 AND o.active AND o.deployment_id <> n.deployment_id
		  AND lower(o.owner) = lower(n.owner) AND lower(o.repo) = lower(n.repo) AND o.environment = n.environment
		RETURNING o.deployment_id, o.installation_id, o.owner, o.repo, o.environment, COALESCE(o.github_id, 0), o.state, o.active`,
		deploymentID)
	if err != nil {
		return nil, fmt.Errorf("replace the active GitHub deployment by deployment %d: %w", deploymentID, err)
	}
	replaced, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GitHubDeployment, error) { return scanGitHubDeployment(r) })
	if err != nil {
		return nil, fmt.Errorf("replace the active GitHub deployment by deployment %d: %w", deploymentID, err)
	}
	if _, err := q.db.Exec(ctx, `UPDATE github_deployments SET active = true, updated_at = now()
		WHERE deployment_id = $1`, deploymentID); err != nil {
		return nil, fmt.Errorf("activate the GitHub deployment of deployment %d: %w", deploymentID, err)
	}
	return replaced, nil
}

// DeactivateGitHubEnvironment marks the active GitHub deployments of
// environment of owner/repo inactive, and returns them: a removed preview
// serves nothing any more.
func (q *Queries) DeactivateGitHubEnvironment(ctx context.Context, owner, repo, environment string) ([]GitHubDeployment, error) {
	rows, err := q.db.Query(ctx, `
		UPDATE github_deployments SET active = false, updated_at = now()
		WHERE active AND lower(owner) = lower($1) AND lower(repo) = lower($2) AND environment = $3
		RETURNING deployment_id, installation_id, owner, repo, environment, COALESCE(github_id, 0), state, active`,
		owner, repo, environment)
	if err != nil {
		return nil, fmt.Errorf("deactivate environment %s of %s/%s: %w", environment, owner, repo, err)
	}
	gone, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GitHubDeployment, error) { return scanGitHubDeployment(r) })
	if err != nil {
		return nil, fmt.Errorf("deactivate environment %s of %s/%s: %w", environment, owner, repo, err)
	}
	return gone, nil
}
