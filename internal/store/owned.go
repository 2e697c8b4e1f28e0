package store

import (
	"context"
	"fmt"
	"time"
)

// OwnedContainer is a container Keystone created, recorded by the id the
// engine gave it. Only these are ever started, kept or removed: labels a
// build can write prove nothing (SPEC §6).
type OwnedContainer struct {
	ID           string
	AppID        int64
	DeploymentID int64
	// KeepUntil is set on a replaced container kept running, unrouted, for
	// an instant rollback (keep_previous); nil otherwise.
	KeepUntil *time.Time
}

// KeptAt reports whether the container is kept for a rollback at now.
func (c OwnedContainer) KeptAt(now time.Time) bool {
	return c.KeepUntil != nil && now.Before(*c.KeepUntil)
}

// AddOwnedContainer records that Keystone created container id for
// deployment deploymentID of app appID.
func (q *Queries) AddOwnedContainer(ctx context.Context, id string, appID, deploymentID int64) error {
	_, err := q.db.Exec(ctx, `INSERT INTO owned_containers (id, app_id, deployment_id) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO NOTHING`, id, appID, deploymentID)
	if err != nil {
		return fmt.Errorf("record container %.12s of deployment %d: %w", id, deploymentID, err)
	}
	return nil
}

// ForgetOwnedContainer drops the record of a container that was removed.
func (q *Queries) ForgetOwnedContainer(ctx context.Context, id string) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM owned_containers WHERE id = $1`, id); err != nil {
		return fmt.Errorf("forget container %.12s: %w", id, err)
	}
	return nil
}

// OwnedContainers returns every container Keystone recorded, oldest first.
func (q *Queries) OwnedContainers(ctx context.Context) ([]OwnedContainer, error) {
	return q.ownedContainers(ctx, ``)
}

// OwnedContainersOfApp returns the containers recorded for app appID,
// oldest first.
func (q *Queries) OwnedContainersOfApp(ctx context.Context, appID int64) ([]OwnedContainer, error) {
	return q.ownedContainers(ctx, `WHERE app_id = $1`, appID)
}

// OwnedContainersOfDeployment returns the containers recorded for
// deployment deploymentID, oldest first.
func (q *Queries) OwnedContainersOfDeployment(ctx context.Context, deploymentID int64) ([]OwnedContainer, error) {
	return q.ownedContainers(ctx, `WHERE deployment_id = $1`, deploymentID)
}

func (q *Queries) ownedContainers(ctx context.Context, where string, args ...any) ([]OwnedContainer, error) {
	rows, err := q.db.Query(ctx, `SELECT id, app_id, deployment_id, keep_until FROM owned_containers `+where+
		` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list owned containers: %w", err)
	}
	defer rows.Close()
	var out []OwnedContainer
	for rows.Next() {
		var c OwnedContainer
		if err := rows.Scan(&c.ID, &c.AppID, &c.DeploymentID, &c.KeepUntil); err != nil {
			return nil, fmt.Errorf("list owned containers: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// AppImageIDs returns the distinct image ids recorded on app appID's
// deployments: the only images of the app Keystone may prune.
func (q *Queries) AppImageIDs(ctx context.Context, appID int64) ([]string, error) {
	rows, err := q.db.Query(ctx, `SELECT DISTINCT image_id FROM deployments WHERE app_id = $1 AND image_id <> ''`, appID)
	if err != nil {
		return nil, fmt.Errorf("list images of app %d: %w", appID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list images of app %d: %w", appID, err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// IsOwnedContainer reports whether Keystone recorded container id.
func (q *Queries) IsOwnedContainer(ctx context.Context, id string) (bool, error) {
	var ok bool
	if err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM owned_containers WHERE id = $1)`, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up container %.12s: %w", id, err)
	}
	return ok, nil
}

// KeepOwnedContainer marks the recorded container id as kept for a
// rollback until until (keep_previous).
func (q *Queries) KeepOwnedContainer(ctx context.Context, id string, until time.Time) error {
	tag, err := q.db.Exec(ctx, `UPDATE owned_containers SET keep_until = $2 WHERE id = $1`, id, until)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("keep container %.12s: %w", id, err)
	}
	return nil
}

// AdoptKeptContainer moves the recorded container id, kept for a rollback,
// to deploymentID, a deployment of the same app that now runs it; it is no
// longer kept. ErrNotFound when id is not recorded for that app.
func (q *Queries) AdoptKeptContainer(ctx context.Context, id string, deploymentID int64) error {
	tag, err := q.db.Exec(ctx, `UPDATE owned_containers SET deployment_id = $2, keep_until = NULL
		WHERE id = $1 AND app_id = (SELECT app_id FROM deployments WHERE id = $2)`, id, deploymentID)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("move container %.12s to deployment %d: %w", id, deploymentID, err)
	}
	return nil
}
