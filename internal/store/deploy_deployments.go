package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// NewDeployment is a deployment to record. State defaults to queued; a
// terminal state (a push to a locked app, a superseded push, an invalid
// .keystone.yml) records it finished at once.
type NewDeployment struct {
	AppID              int64
	Kind               string
	SHA                string
	Ref                string
	Actor              string
	Trigger            string
	State              string
	Step               string
	Description        string
	TargetDeploymentID int64
	DeliveryID         int64
	Config             json.RawMessage
	PushedAt           *time.Time
}

// CreateDeployment inserts d and returns it.
func (q *Queries) CreateDeployment(ctx context.Context, d NewDeployment) (Deployment, error) {
	if d.State == "" {
		d.State = StateQueued
	}
	if d.Step == "" {
		d.Step = StateQueued
	}
	if len(d.Config) == 0 {
		d.Config = json.RawMessage(`{}`)
	}
	finished := d.State != StateQueued && d.State != StateRunning
	row := q.db.QueryRow(ctx, `
		INSERT INTO deployments (app_id, kind, sha, ref, actor, trigger, state, step, description,
			target_deployment_id, delivery_id, config, pushed_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULLIF($10, 0), NULLIF($11, 0), $12, $13,
			CASE WHEN $14 THEN now() END)
		RETURNING `+deploymentColumns,
		d.AppID, d.Kind, d.SHA, noNUL(d.Ref), noNUL(d.Actor), d.Trigger, d.State, d.Step, noNUL(d.Description),
		d.TargetDeploymentID, d.DeliveryID, d.Config, d.PushedAt, finished)
	out, err := scanDeployment(row)
	if err != nil {
		return Deployment{}, fmt.Errorf("create %s deployment of app %d at %s: %w", d.Kind, d.AppID, d.SHA, err)
	}
	return out, nil
}

// DeploymentConfig returns the configuration the deployment runs.
func (q *Queries) DeploymentConfig(ctx context.Context, id int64) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := q.db.QueryRow(ctx, `SELECT config FROM deployments WHERE id = $1`, id).Scan(&raw); err != nil {
		return nil, notFound(err, fmt.Sprintf("config of deployment %d", id))
	}
	return raw, nil
}

// DeploymentDeliveryExists reports whether the delivery already made a
// deployment of the app.
func (q *Queries) DeploymentDeliveryExists(ctx context.Context, deliveryID, appID int64) (bool, error) {
	var ok bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deployments WHERE delivery_id = $1 AND app_id = $2)`,
		deliveryID, appID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up deployments of delivery %d: %w", deliveryID, err)
	}
	return ok, nil
}

// ErrDeploymentFinished is StartDeployment's answer for a deployment that
// was finished meanwhile (a queued push superseded by a newer one).
var ErrDeploymentFinished = errors.New("deployment already finished")

// StartDeployment moves a deployment to running at step; started_at keeps
// the first start across retries. A deployment finished meanwhile is left
// as it is: ErrDeploymentFinished.
func (q *Queries) StartDeployment(ctx context.Context, id int64, step, description string) (Deployment, error) {
	d, err := scanDeployment(q.db.QueryRow(ctx, `UPDATE deployments SET state = 'running', step = $2, description = $3,
		started_at = COALESCE(started_at, now()) WHERE id = $1 AND finished_at IS NULL RETURNING `+deploymentColumns,
		id, step, noNUL(description)))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err2 := q.Deployment(ctx, id); err2 == nil {
			return Deployment{}, fmt.Errorf("start deployment %d: %w", id, ErrDeploymentFinished)
		}
	}
	if err != nil {
		return Deployment{}, notFound(err, fmt.Sprintf("start deployment %d", id))
	}
	return d, nil
}

// SetDeploymentStep records the step a running deployment is at.
func (q *Queries) SetDeploymentStep(ctx context.Context, id int64, step, description string) (Deployment, error) {
	return q.updateDeployment(ctx, id, `step = $2, description = $3`, step, noNUL(description))
}

// SetDeploymentImage records the image the deployment runs.
func (q *Queries) SetDeploymentImage(ctx context.Context, id int64, imageID string) (Deployment, error) {
	return q.updateDeployment(ctx, id, `image_id = $2`, imageID)
}

// SetDeploymentContainer records the deployment's container.
func (q *Queries) SetDeploymentContainer(ctx context.Context, id int64, containerID string) (Deployment, error) {
	return q.updateDeployment(ctx, id, `container_id = $2`, containerID)
}

// Health is the health result of a deployment.
type Health struct {
	Status int           // HTTP status of the last probe; 0 if none answered
	After  time.Duration // time to healthy; 0 if not healthy
	Error  string        // the last error; "" when healthy
}

// SetDeploymentHealth records the health result.
func (q *Queries) SetDeploymentHealth(ctx context.Context, id int64, h Health) (Deployment, error) {
	var ms *int64
	if h.After > 0 {
		v := h.After.Milliseconds()
		ms = &v
	}
	return q.updateDeployment(ctx, id, `health_status = NULLIF($2, 0), health_ms = $3, health_error = $4`,
		h.Status, ms, noNUL(h.Error))
}

// SetDeploymentDowntime records the switch window of an update.
func (q *Queries) SetDeploymentDowntime(ctx context.Context, id int64, downtime time.Duration) (Deployment, error) {
	return q.updateDeployment(ctx, id, `downtime_ms = $2`, downtime.Milliseconds())
}

// SetDeploymentDrain records what a switch through the router did to the
// old version's in-flight requests.
func (q *Queries) SetDeploymentDrain(ctx context.Context, id int64, drained, failed int) (Deployment, error) {
	return q.updateDeployment(ctx, id, `requests_drained = $2, requests_failed = $3`, drained, failed)
}

// FinishDeployment ends a deployment in state with description. A
// deployment already finished is left as it is and returned.
func (q *Queries) FinishDeployment(ctx context.Context, id int64, state, description string) (Deployment, error) {
	d, err := scanDeployment(q.db.QueryRow(ctx, `
		UPDATE deployments SET state = $2, description = $3, step = $2, finished_at = now()
		WHERE id = $1 AND finished_at IS NULL
		RETURNING `+deploymentColumns, id, state, noNUL(description)))
	if err == nil {
		return d, nil
	}
	if existing, err2 := q.Deployment(ctx, id); err2 == nil && existing.Finished() {
		return existing, nil
	}
	return Deployment{}, notFound(err, fmt.Sprintf("finish deployment %d", id))
}

func (q *Queries) updateDeployment(ctx context.Context, id int64, set string, args ...any) (Deployment, error) {
	d, err := scanDeployment(q.db.QueryRow(ctx, `UPDATE deployments SET `+set+` WHERE id = $1 RETURNING `+deploymentColumns,
		append([]any{id}, args...)...))
	if err != nil {
		return Deployment{}, notFound(err, fmt.Sprintf("update deployment %d", id))
	}
	return d, nil
}

// pushOrder orders an app's push deployments: by push time, then id.
const pushOrder = `COALESCE(pushed_at, queued_at)`

// NewerPush returns the newest push deployment of d's app that was pushed
// after d, if any: d must then not deploy.
func (q *Queries) NewerPush(ctx context.Context, d Deployment) (Deployment, bool, error) {
	rows, err := q.db.Query(ctx, `
		WITH me AS (SELECT `+pushOrder+` AS at FROM deployments WHERE id = $2)
		SELECT `+deploymentColumns+` FROM deployments, me
		WHERE app_id = $1 AND trigger = 'push' AND id <> $2 AND (`+pushOrder+`, id) > (me.at, $2)
		ORDER BY `+pushOrder+` DESC, id DESC LIMIT 1`, d.AppID, d.ID)
	if err != nil {
		return Deployment{}, false, fmt.Errorf("look for pushes newer than deployment %d: %w", d.ID, err)
	}
	ds, err := collectDeployments(rows)
	if err != nil || len(ds) == 0 {
		return Deployment{}, false, err
	}
	return ds[0], true, nil
}

// QueuedPushesBefore returns the app's queued push deployments pushed
// before d: d supersedes them.
func (q *Queries) QueuedPushesBefore(ctx context.Context, d Deployment) ([]Deployment, error) {
	rows, err := q.db.Query(ctx, `
		WITH me AS (SELECT `+pushOrder+` AS at FROM deployments WHERE id = $2)
		SELECT `+deploymentColumns+` FROM deployments, me
		WHERE app_id = $1 AND trigger = 'push' AND state = 'queued' AND id <> $2 AND (`+pushOrder+`, id) < (me.at, $2)
		ORDER BY id FOR UPDATE OF deployments`, d.AppID, d.ID)
	if err != nil {
		return nil, fmt.Errorf("look for pushes older than deployment %d: %w", d.ID, err)
	}
	return collectDeployments(rows)
}

// SucceededDeployments returns the app's successful deployments, newest
// success first, at most limit.
func (q *Queries) SucceededDeployments(ctx context.Context, appID int64, limit int) ([]Deployment, error) {
	rows, err := q.db.Query(ctx, `SELECT `+deploymentColumns+` FROM deployments
		WHERE app_id = $1 AND state = 'succeeded' ORDER BY finished_at DESC, id DESC LIMIT $2`, appID, limit)
	if err != nil {
		return nil, fmt.Errorf("list successful deployments of app %d: %w", appID, err)
	}
	return collectDeployments(rows)
}

// UnfinishedDeployments returns the app's deployments not yet finished.
func (q *Queries) UnfinishedDeployments(ctx context.Context, appID int64) ([]Deployment, error) {
	rows, err := q.db.Query(ctx, `SELECT `+deploymentColumns+` FROM deployments
		WHERE app_id = $1 AND finished_at IS NULL ORDER BY id`, appID)
	if err != nil {
		return nil, fmt.Errorf("list unfinished deployments of app %d: %w", appID, err)
	}
	return collectDeployments(rows)
}

// StrandedDeployment is an unfinished deployment no job will finish: its job
// is gone, finished or out of attempts.
type StrandedDeployment struct {
	Deployment
	Attempts  int    // attempts its job made
	LastError string // the job's last recorded error
}

// AllUnfinishedDeployments returns every deployment not yet finished, of
// every app, oldest first. Which of them still have a job is River's to say
// (through its API), not this package's.
func (q *Queries) AllUnfinishedDeployments(ctx context.Context) ([]Deployment, error) {
	rows, err := q.db.Query(ctx, `SELECT `+deploymentColumns+` FROM deployments
		WHERE finished_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list unfinished deployments: %w", err)
	}
	return collectDeployments(rows)
}

func collectDeployments(rows interface {
	Next() bool
	Scan(...any) error
	Close()
	Err() error
}) ([]Deployment, error) {
	defer rows.Close()
	var out []Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, fmt.Errorf("read deployments: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read deployments: %w", err)
	}
	return out, nil
}
