package storetest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keystone-app/keystone/internal/store"
)

// Fixtures: rows the deploy engine would write over hours, written at once
// for tests and benchmarks of what reads them. Each takes the database (a
// pool or a transaction) and returns errors, so stand-ins for real components
// can call them outside the test goroutine.

// AddApp inserts an app; zero fields get workable defaults (branch main,
// installation 1).
func AddApp(ctx context.Context, db store.DBTX, a store.App) (store.App, error) {
	if a.Branch == "" {
		a.Branch = "main"
	}
	if a.InstallationID == 0 {
		a.InstallationID = 1
	}
	if len(a.Config) == 0 {
		a.Config = []byte(`{}`)
	}
	err := db.QueryRow(ctx, `
		INSERT INTO apps (installation_id, owner, repo, name, branch, clone_url, config, host_port,
			locked_by, locked_reason, locked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, 0), NULLIF($9, ''), NULLIF($10, ''),
			CASE WHEN $9 <> '' THEN now() END)
		RETURNING id`,
		a.InstallationID, a.Owner, a.Repo, a.Name, a.Branch, a.CloneURL, a.Config, a.HostPort,
		a.LockedBy, a.LockedReason).Scan(&a.ID)
	if err != nil {
		return store.App{}, fmt.Errorf("fixture app %s: %w", a.Key(), err)
	}
	return store.NewQueries(db).App(ctx, a.ID)
}

// AddDeployment inserts a deployment as given (kind, trigger and state
// default to update, push and queued; the SHA to a made-up one), and makes it
// the app's serving one when it succeeded.
func AddDeployment(ctx context.Context, db store.DBTX, d store.Deployment) (store.Deployment, error) {
	if d.Kind == "" {
		d.Kind = store.KindUpdate
	}
	if d.Trigger == "" {
		d.Trigger = store.TriggerPush
	}
	if d.State == "" {
		d.State = store.StateQueued
	}
	if d.Step == "" {
		d.Step = d.State
	}
	if d.SHA == "" {
		d.SHA = SHA(d.AppID*1_000_003 + time.Now().UnixNano())
	}
	if d.Actor == "" {
		d.Actor = "octocat"
	}
	if d.QueuedAt.IsZero() {
		d.QueuedAt = time.Now()
	}
	err := db.QueryRow(ctx, `
		INSERT INTO deployments (app_id, kind, sha, ref, actor, trigger, state, step, description,
			target_deployment_id, health_status, health_ms, health_error, log_truncated,
			queued_at, started_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULLIF($10, 0), NULLIF($11, 0), NULLIF($12, 0), $13, $14,
			$15, $16, $17)
		RETURNING id`,
		d.AppID, d.Kind, d.SHA, d.Ref, d.Actor, d.Trigger, d.State, d.Step, d.Description,
		d.TargetDeploymentID, d.HealthStatus, d.HealthMS, d.HealthError, d.LogTruncated,
		d.QueuedAt, d.StartedAt, d.FinishedAt).Scan(&d.ID)
	if err != nil {
		return store.Deployment{}, fmt.Errorf("fixture deployment of app %d: %w", d.AppID, err)
	}
	if d.State == store.StateSucceeded {
		if _, err := db.Exec(ctx, `UPDATE apps SET current_deployment_id = $1 WHERE id = $2`, d.ID, d.AppID); err != nil {
			return store.Deployment{}, fmt.Errorf("fixture deployment %d: serve it: %w", d.ID, err)
		}
	}
	return store.NewQueries(db).Deployment(ctx, d.ID)
}

// FinishDeployment moves a deployment to a final state, as the engine does
// at its end (making it the serving one when it succeeded).
func FinishDeployment(ctx context.Context, db store.DBTX, id int64, state, description string) error {
	var appID int64
	err := db.QueryRow(ctx, `
		UPDATE deployments SET state = $2, step = $2, description = $3,
			started_at = COALESCE(started_at, now()), finished_at = now()
		WHERE id = $1 RETURNING app_id`, id, state, description).Scan(&appID)
	if err != nil {
		return fmt.Errorf("fixture: finish deployment %d: %w", id, err)
	}
	if state == store.StateSucceeded {
		if _, err := db.Exec(ctx, `UPDATE apps SET current_deployment_id = $1 WHERE id = $2`, id, appID); err != nil {
			return fmt.Errorf("fixture: serve deployment %d: %w", id, err)
		}
	}
	return nil
}

// AddLogLines appends lines to a deployment's log, numbering them after the
// last one, as the engine's log writer does.
func AddLogLines(ctx context.Context, db store.DBTX, deploymentID int64, lines ...string) error {
	_, err := db.Exec(ctx, `
		WITH last AS (SELECT COALESCE(max(seq), 0) AS seq FROM deployment_log_lines WHERE deployment_id = $1)
		INSERT INTO deployment_log_lines (deployment_id, seq, line)
		SELECT $1, last.seq + l.n, l.line FROM last, unnest($2::text[]) WITH ORDINALITY AS l(line, n)`,
		deploymentID, lines)
	if err != nil {
		return fmt.Errorf("fixture: log of deployment %d: %w", deploymentID, err)
	}
	_, err = db.Exec(ctx, `
		UPDATE deployments SET log_lines = (SELECT count(*) FROM deployment_log_lines WHERE deployment_id = $1)
		WHERE id = $1`, deploymentID)
	if err != nil {
		return fmt.Errorf("fixture: count log of deployment %d: %w", deploymentID, err)
	}
	return nil
}

// AddStep records one step of a deployment.
func AddStep(ctx context.Context, db store.DBTX, deploymentID int64, s store.DeploymentStep) error {
	_, err := db.Exec(ctx, `
		INSERT INTO deployment_steps (deployment_id, position, name, started_at, finished_at, error)
		VALUES ($1, $2, $3, $4, $5, $6)`, deploymentID, s.Position, s.Name, s.StartedAt, s.FinishedAt, s.Error)
	if err != nil {
		return fmt.Errorf("fixture: step %s of deployment %d: %w", s.Name, deploymentID, err)
	}
	return nil
}

// SeedHistory creates apps owner "bench", repositories repo-000…, each app
// with perApp finished deployments (every tenth failed, the rest succeeded,
// the newest success serving), in a few set-based statements.
func SeedHistory(ctx context.Context, db store.DBTX, apps, perApp int) error {
	_, err := db.Exec(ctx, `
		INSERT INTO apps (installation_id, owner, repo, name, branch, host_port)
		SELECT 1, 'bench', 'repo-' || lpad(i::text, 3, '0'), 'web', 'main', 20000 + i
		FROM generate_series(1, $1) AS i`, apps)
	if err != nil {
		return fmt.Errorf("seed apps: %w", err)
	}
	_, err = db.Exec(ctx, `
		INSERT INTO deployments (app_id, kind, sha, actor, trigger, state, step, description,
			health_status, health_ms, queued_at, started_at, finished_at)
		SELECT a.id, CASE WHEN n = 1 THEN 'deploy' ELSE 'update' END,
			substr(md5(a.id::text || ':' || n::text) || md5(n::text), 1, 40), 'octocat', 'push',
			CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
			CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
			CASE WHEN n % 10 = 0 THEN 'Health check failed: GET /healthz 500 after 30s' ELSE 'Deployed in 12.3s' END,
			CASE WHEN n % 10 = 0 THEN 500 ELSE 200 END, 1200,
			now() - make_interval(mins => $1 - n), now() - make_interval(mins => $1 - n),
			now() - make_interval(mins => $1 - n) + interval '12 seconds'
		FROM apps a, generate_series(1, $1) AS n
		WHERE a.owner = 'bench'
		ORDER BY a.id, n`, perApp)
	if err != nil {
		return fmt.Errorf("seed deployments: %w", err)
	}
	_, err = db.Exec(ctx, `
		UPDATE apps SET current_deployment_id = (
			SELECT max(id) FROM deployments d WHERE d.app_id = apps.id AND d.state = 'succeeded')
		WHERE owner = 'bench'`)
	if err != nil {
		return fmt.Errorf("seed serving deployments: %w", err)
	}
	for _, table := range []string{"apps", "deployments"} {
		if _, err := db.Exec(ctx, "ANALYZE "+table); err != nil {
			return fmt.Errorf("seed: analyze %s: %w", table, err)
		}
	}
	return nil
}

// SHA returns a made-up 40-hex commit SHA derived from n.
func SHA(n int64) string {
	s := fmt.Sprintf("%016x", uint64(n)*0x9e3779b97f4a7c15)
	return strings.Repeat(s, 3)[:40]
}
