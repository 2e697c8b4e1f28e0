package store

import (
	"context"
	"fmt"
	"time"
)

// Deployment kinds (SPEC §6).
const (
	KindDeploy   = "deploy"   // first deploy of an app
	KindUpdate   = "update"   // a later push
	KindRollback = "rollback" // back to a kept image
	KindRedeploy = "redeploy" // the same SHA again
)

// Triggers: what asked for a deployment.
const (
	TriggerPush    = "push"
	TriggerComment = "comment"
	TriggerPage    = "page"
)

// Deployment states. Queued and running are pending on GitHub; succeeded is
// success; failed is the app's fault (failure); errored and superseded are
// Keystone's or the infrastructure's (error).
const (
	StateQueued     = "queued"
	StateRunning    = "running"
	StateSucceeded  = "succeeded"
	StateFailed     = "failed"
	StateErrored    = "errored"
	StateSuperseded = "superseded"
)

// Deployment is one attempt to put a SHA of an app into service.
type Deployment struct {
	ID                 int64
	AppID              int64
	Kind               string
	SHA                string
	Ref                string
	Actor              string
	Trigger            string
	State              string
	Step               string
	Description        string // what the commit status says
	TargetDeploymentID int64  // rollback/redeploy source; 0 if none
	DeliveryID         int64  // the push delivery; 0 if none
	ImageID            string
	ContainerID        string
	HealthStatus       int // HTTP status of the last probe; 0 if none
	HealthMS           int // time to healthy; 0 if not healthy
	HealthError        string
	DowntimeMS         *int // switch window of an update; nil if no switch
	// RequestsDrained and RequestsFailed count the old version's in-flight
	// requests at a switch through the router; nil without one.
	RequestsDrained *int
	RequestsFailed  *int
	LogLines        int
	LogTruncated    bool
	QueuedAt        time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
}

// Finished reports whether the deployment reached a final state.
func (d Deployment) Finished() bool {
	switch d.State {
	case StateQueued, StateRunning:
		return false
	}
	return true
}

const deploymentColumns = `id, app_id, kind, sha, ref, actor, trigger, state, step, description,
	COALESCE(target_deployment_id, 0), COALESCE(delivery_id, 0), image_id, container_id,
	COALESCE(health_status, 0), COALESCE(health_ms, 0), health_error, downtime_ms, requests_drained, requests_failed,
	log_lines, log_truncated, queued_at, started_at, finished_at`

func scanDeployment(row interface{ Scan(...any) error }) (Deployment, error) {
	var d Deployment
	err := row.Scan(&d.ID, &d.AppID, &d.Kind, &d.SHA, &d.Ref, &d.Actor, &d.Trigger, &d.State, &d.Step,
		&d.Description, &d.TargetDeploymentID, &d.DeliveryID, &d.ImageID, &d.ContainerID,
		&d.HealthStatus, &d.HealthMS, &d.HealthError, &d.DowntimeMS, &d.RequestsDrained, &d.RequestsFailed,
		&d.LogLines, &d.LogTruncated, &d.QueuedAt, &d.StartedAt, &d.FinishedAt)
	return d, err
}

// Deployment returns the deployment with the given id.
func (q *Queries) Deployment(ctx context.Context, id int64) (Deployment, error) {
	d, err := scanDeployment(q.db.QueryRow(ctx, `SELECT `+deploymentColumns+` FROM deployments WHERE id = $1`, id))
	if err != nil {
		return Deployment{}, notFound(err, fmt.Sprintf("deployment %d", id))
	}
	return d, nil
}

// LogLine is one stored line of a deployment's log.
type LogLine struct {
	Seq  int
	At   time.Time
	Text string
}

// DeploymentLog returns the lines of a deployment's log after seq (0: from the
// start), at most limit of them, in order. Live log followers call it with the
// last seq they have.
func (q *Queries) DeploymentLog(ctx context.Context, deploymentID int64, afterSeq, limit int) ([]LogLine, error) {
	rows, err := q.db.Query(ctx, `
		SELECT seq, at, line FROM deployment_log_lines
		WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, deploymentID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read log of deployment %d: %w", deploymentID, err)
	}
	defer rows.Close()
	var out []LogLine
	for rows.Next() {
		var l LogLine
		if err := rows.Scan(&l.Seq, &l.At, &l.Text); err != nil {
			return nil, fmt.Errorf("read log of deployment %d: %w", deploymentID, err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
