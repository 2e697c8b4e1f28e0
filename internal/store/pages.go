package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// The status page's reads. Each is a bounded number of index lookups so that
// pages stay fast with thousands of deployments per app.

// AppSummary is one line of the apps overview: the app, the deployment
// serving now and the newest deployment (the same one when the newest
// succeeded; nil when there is none).
type AppSummary struct {
	App     App
	Current *Deployment
	Latest  *Deployment
}

// AppsOverview returns every app not removed, by owner, repository and name,
// with its serving and newest deployments.
func (q *Queries) AppsOverview(ctx context.Context) ([]AppSummary, error) {
	rows, err := q.db.Query(ctx, `
		SELECT `+appColumns+`,
			COALESCE((SELECT d.id FROM deployments d WHERE d.app_id = apps.id ORDER BY d.id DESC LIMIT 1), 0)
		FROM apps WHERE removed_at IS NULL ORDER BY owner, repo, name`)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	var out []AppSummary
	var latest []int64
	var ids []int64
	for rows.Next() {
		var a App
		var latestID int64
		err := rows.Scan(&a.ID, &a.InstallationID, &a.Owner, &a.Repo, &a.Name, &a.Branch, &a.CloneURL, &a.Config,
			&a.HostPort, &a.CurrentDeploymentID, &a.LockedBy, &a.LockedReason, &a.LockedAt,
			&a.CreatedAt, &a.UpdatedAt, &a.RemovedAt, &latestID)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list apps: %w", err)
		}
		out = append(out, AppSummary{App: a})
		latest = append(latest, latestID)
		ids = append(ids, latestID, a.CurrentDeploymentID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	byID, err := q.deploymentsByID(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	for i := range out {
		if d, ok := byID[out[i].App.CurrentDeploymentID]; ok {
			out[i].Current = &d
		}
		if d, ok := byID[latest[i]]; ok {
			out[i].Latest = &d
		}
	}
	return out, nil
}

func (q *Queries) deploymentsByID(ctx context.Context, ids []int64) (map[int64]Deployment, error) {
	rows, err := q.db.Query(ctx, `SELECT `+deploymentColumns+` FROM deployments WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read deployments: %w", err)
	}
	defer rows.Close()
	out := make(map[int64]Deployment, len(ids))
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, fmt.Errorf("read deployments: %w", err)
		}
		out[d.ID] = d
	}
	return out, rows.Err()
}

// AppHistory returns up to limit deployments of the app, newest first,
// starting below beforeID (0: from the newest).
func (q *Queries) AppHistory(ctx context.Context, appID, beforeID int64, limit int) ([]Deployment, error) {
	return q.deploymentList(ctx, fmt.Sprintf("history of app %d", appID), `
		SELECT `+deploymentColumns+` FROM deployments
		WHERE app_id = $1 AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3`, appID, beforeID, limit)
}

// RollbackCandidates returns up to limit successful deployments of the app,
// newest first: what a rollback can go back to.
func (q *Queries) RollbackCandidates(ctx context.Context, appID int64, limit int) ([]Deployment, error) {
	return q.deploymentList(ctx, fmt.Sprintf("rollback targets of app %d", appID), `
		SELECT `+deploymentColumns+` FROM deployments
		WHERE app_id = $1 AND state = 'succeeded' ORDER BY id DESC LIMIT $2`, appID, limit)
}

func (q *Queries) deploymentList(ctx context.Context, what, sql string, args ...any) ([]Deployment, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer rows.Close()
	var out []Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
}

// DeploymentStep is one timed step of a deployment.
type DeploymentStep struct {
	Position   int
	Name       string
	StartedAt  time.Time
	FinishedAt *time.Time // nil while it runs
	Error      string
}

// StepsOf returns the steps of a deployment in order.
func (q *Queries) StepsOf(ctx context.Context, deploymentID int64) ([]DeploymentStep, error) {
	rows, err := q.db.Query(ctx, `
		SELECT position, name, started_at, finished_at, error FROM deployment_steps
		WHERE deployment_id = $1 ORDER BY position`, deploymentID)
	if err != nil {
		return nil, fmt.Errorf("read steps of deployment %d: %w", deploymentID, err)
	}
	defer rows.Close()
	var out []DeploymentStep
	for rows.Next() {
		var s DeploymentStep
		if err := rows.Scan(&s.Position, &s.Name, &s.StartedAt, &s.FinishedAt, &s.Error); err != nil {
			return nil, fmt.Errorf("read steps of deployment %d: %w", deploymentID, err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// AuditPage returns up to limit audit events, newest first, starting below
// beforeID (0: from the newest).
func (q *Queries) AuditPage(ctx context.Context, beforeID int64, limit int) ([]AuditEvent, error) {
	rows, err := q.db.Query(ctx, `
		SELECT id, at, actor, action, target, details FROM audit_events
		WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2`, beforeID, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var details []byte
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &details); err != nil {
			return nil, fmt.Errorf("read audit events: %w", err)
		}
		if err := json.Unmarshal(details, &e.Details); err != nil {
			return nil, fmt.Errorf("read audit event %d: details: %w", e.ID, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
