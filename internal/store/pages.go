package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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
// each followed by its open previews by pull request number, with its
// serving and newest deployments, in one query.
func (q *Queries) AppsOverview(ctx context.Context) ([]AppSummary, error) {
	rows, err := q.db.Query(ctx, `
		SELECT a.*, `+optionalDeploymentColumns("cur")+`, `+optionalDeploymentColumns("latest")+`
		FROM (
			SELECT `+appColumns+`, id AS app_key, current_deployment_id AS current_key,
				parent_app_id AS parent_key, pr_number AS pr_key
			FROM apps WHERE removed_at IS NULL
		) a
		LEFT JOIN deployments cur ON cur.id = a.current_key
		LEFT JOIN LATERAL (
			SELECT * FROM deployments d WHERE d.app_id = a.app_key ORDER BY d.id DESC LIMIT 1
		) latest ON true
		-- A preview comes right under the app it previews (SPEC §14).
		ORDER BY a.owner, a.repo,
			COALESCE((SELECT p.name FROM apps p WHERE p.id = a.parent_key), a.name), a.pr_key NULLS FIRST`)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	defer rows.Close()
	var out []AppSummary
	for rows.Next() {
		var a App
		var cur, latest Deployment
		var appKey, currentKey, parentKey *int64 // the join and order keys, again
		var prKey *int32
		dest := []any{&a.ID, &a.InstallationID, &a.Owner, &a.Repo, &a.Name, &a.Branch, &a.CloneURL, &a.Config,
			&a.HostPort, &a.CurrentDeploymentID, &a.LockedBy, &a.LockedReason, &a.LockedAt,
			&a.CreatedAt, &a.UpdatedAt, &a.RemovedAt, &a.PRNumber, &a.ParentAppID, &a.HeadRef, &a.Hosts, &appKey, &currentKey, &parentKey, &prKey}
		dest = append(dest, deploymentDest(&cur)...)
		dest = append(dest, deploymentDest(&latest)...)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		s := AppSummary{App: a}
		if cur.ID != 0 {
			s.Current = &cur
		}
		if latest.ID != 0 {
			s.Latest = &latest
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return out, nil
}

// optionalDeploymentColumns selects the deployment columns of a left-joined
// alias, zero (id 0) when there is no row.
func optionalDeploymentColumns(x string) string {
	return strings.NewReplacer("X.", x+".").Replace(`COALESCE(X.id, 0), COALESCE(X.app_id, 0), COALESCE(X.kind, ''),
		COALESCE(X.sha, ''), COALESCE(X.ref, ''), COALESCE(X.actor, ''), COALESCE(X.trigger, ''), COALESCE(X.state, ''),
		COALESCE(X.step, ''), COALESCE(X.description, ''), COALESCE(X.target_deployment_id, 0), COALESCE(X.delivery_id, 0),
		COALESCE(X.image_id, ''), COALESCE(X.container_id, ''), COALESCE(X.health_status, 0), COALESCE(X.health_ms, 0),
		COALESCE(X.health_error, ''), X.downtime_ms, X.requests_drained, X.requests_failed, COALESCE(X.log_lines, 0), COALESCE(X.log_truncated, false),
		COALESCE(X.queued_at, 'epoch'), X.started_at, X.finished_at`)
}

// deploymentDest is where the columns of optionalDeploymentColumns scan into
// (the order of deploymentColumns).
func deploymentDest(d *Deployment) []any {
	return []any{&d.ID, &d.AppID, &d.Kind, &d.SHA, &d.Ref, &d.Actor, &d.Trigger, &d.State, &d.Step,
		&d.Description, &d.TargetDeploymentID, &d.DeliveryID, &d.ImageID, &d.ContainerID,
		&d.HealthStatus, &d.HealthMS, &d.HealthError, &d.DowntimeMS, &d.RequestsDrained, &d.RequestsFailed,
		&d.LogLines, &d.LogTruncated, &d.QueuedAt, &d.StartedAt, &d.FinishedAt}
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
