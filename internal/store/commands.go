package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Outcomes of a /keystone command.
const (
	CommandAccepted = "accepted" // permitted; running
	CommandDenied   = "denied"   // the commenter lacks write access
	CommandUsage    = "usage"    // not understood, or help: answered with the usage
	CommandDone     = "done"     // ran (a deployment it asked for may still be running)
	CommandRefused  = "refused"  // permitted but impossible (no such app, no target)
)

// Command is one /keystone command read from a comment.
type Command struct {
	ID             int64
	DeliveryID     int64
	InstallationID int64
	Owner, Repo    string
	IssueNumber    int
	CommentID      int64
	Actor          string
	Verb           string
	Outcome        string
	AppID          int64 // 0 until known
	DeploymentID   int64 // the deployment it asked for; 0 if none
}

const commandColumns = `id, delivery_id, installation_id, owner, repo, issue_number, comment_id, actor, verb,
	outcome, COALESCE(app_id, 0), COALESCE(deployment_id, 0)`

func scanCommand(row interface{ Scan(...any) error }) (Command, error) {
	var c Command
	err := row.Scan(&c.ID, &c.DeliveryID, &c.InstallationID, &c.Owner, &c.Repo, &c.IssueNumber, &c.CommentID,
		&c.Actor, &c.Verb, &c.Outcome, &c.AppID, &c.DeploymentID)
	return c, err
}

// InsertCommand records c unless its delivery has a command already, and
// returns the record as stored, with inserted=false when it existed. A
// command of a comment another delivery holds is ErrReplayed.
func (q *Queries) InsertCommand(ctx context.Context, c Command) (Command, bool, error) {
	stored, err := scanCommand(q.db.QueryRow(ctx, `
		INSERT INTO github_commands (delivery_id, installation_id, owner, repo, issue_number, comment_id, actor, verb,
			outcome, app_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULLIF($10, 0))
		ON CONFLICT DO NOTHING
		RETURNING `+commandColumns,
		c.DeliveryID, c.InstallationID, noNUL(c.Owner), noNUL(c.Repo), c.IssueNumber, c.CommentID, noNUL(c.Actor),
		noNUL(c.Verb), c.Outcome, c.AppID))
	if errors.Is(err, pgx.ErrNoRows) {
		existing, err := q.CommandByDelivery(ctx, c.DeliveryID)
		if errors.Is(err, ErrNotFound) {
			return Command{}, false, fmt.Errorf("command of comment %d in delivery %d: %w", c.CommentID, c.DeliveryID, ErrReplayed)
		}
		return existing, false, err
	}
	if err != nil {
		return Command{}, false, fmt.Errorf("record command of delivery %d: %w", c.DeliveryID, err)
	}
	return stored, true, nil
}

// CommandByDelivery returns the command read from delivery deliveryID.
func (q *Queries) CommandByDelivery(ctx context.Context, deliveryID int64) (Command, error) {
	c, err := scanCommand(q.db.QueryRow(ctx, `SELECT `+commandColumns+` FROM github_commands WHERE delivery_id = $1`,
		deliveryID))
	if err != nil {
		return Command{}, notFound(err, fmt.Sprintf("command of delivery %d", deliveryID))
	}
	return c, nil
}

// SetCommandOutcome records how command id ended and the app it was about.
func (q *Queries) SetCommandOutcome(ctx context.Context, id int64, outcome string, appID int64) error {
	_, err := q.db.Exec(ctx, `UPDATE github_commands SET outcome = $2, app_id = COALESCE(NULLIF($3, 0), app_id),
		updated_at = now() WHERE id = $1`, id, outcome, appID)
	if err != nil {
		return fmt.Errorf("record outcome of command %d: %w", id, err)
	}
	return nil
}

// LinkCommandDeployment records that command id asked for deployment
// deploymentID, unless it is linked already; linked tells whether this call
// made the link.
func (q *Queries) LinkCommandDeployment(ctx context.Context, id, deploymentID int64) (linked bool, err error) {
	tag, err := q.db.Exec(ctx, `UPDATE github_commands SET deployment_id = $2, updated_at = now()
		WHERE id = $1 AND deployment_id IS NULL`, id, deploymentID)
	if err != nil {
		return false, fmt.Errorf("link command %d to deployment %d: %w", id, deploymentID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// CommandsOfDeployment returns the commands that asked for deployment id.
func (q *Queries) CommandsOfDeployment(ctx context.Context, deploymentID int64) ([]Command, error) {
	rows, err := q.db.Query(ctx, `SELECT `+commandColumns+` FROM github_commands WHERE deployment_id = $1 ORDER BY id`,
		deploymentID)
	if err != nil {
		return nil, fmt.Errorf("commands of deployment %d: %w", deploymentID, err)
	}
	defer rows.Close()
	var out []Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, fmt.Errorf("commands of deployment %d: %w", deploymentID, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RepositoryApps returns the apps of owner/repo that are still in its
// .keystone.yml, by name. Names match GitHub's way: case-insensitively.
func (q *Queries) RepositoryApps(ctx context.Context, owner, repo string) ([]App, error) {
	rows, err := q.db.Query(ctx, `SELECT `+appColumns+` FROM apps
		WHERE lower(owner) = lower($1) AND lower(repo) = lower($2) AND removed_at IS NULL AND pr_number IS NULL
		ORDER BY name`,
		noNUL(owner), noNUL(repo))
	if err != nil {
		return nil, fmt.Errorf("apps of %s/%s: %w", owner, repo, err)
	}
	defer rows.Close()
	var out []App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("apps of %s/%s: %w", owner, repo, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// LockApp locks app id for by with reason if it is not locked, and returns
// the app as it is now: locked by by, or still by whoever held it (locked
// false).
func (q *Queries) LockApp(ctx context.Context, id int64, by, reason string) (app App, locked bool, err error) {
	app, err = scanApp(q.db.QueryRow(ctx, `UPDATE apps SET locked_by = $2, locked_reason = $3, locked_at = now(),
		updated_at = now() WHERE id = $1 AND locked_by IS NULL RETURNING `+appColumns, id, noNUL(by), noNUL(reason)))
	if errors.Is(err, pgx.ErrNoRows) {
		app, err = q.App(ctx, id)
		return app, false, err
	}
	if err != nil {
		return App{}, false, fmt.Errorf("lock app %d: %w", id, err)
	}
	return app, true, nil
}

// UnlockApp unlocks app id and returns it as it was before; unlocked is
// false when it was not locked.
func (q *Queries) UnlockApp(ctx context.Context, id int64) (before App, unlocked bool, err error) {
	before, err = scanApp(q.db.QueryRow(ctx, `
		UPDATE apps SET locked_by = NULL, locked_reason = NULL, locked_at = NULL, updated_at = now()
		FROM (SELECT locked_by, locked_reason, locked_at FROM apps WHERE id = $1 FOR UPDATE) old
		WHERE apps.id = $1 AND apps.locked_by IS NOT NULL
		RETURNING apps.id, apps.installation_id, apps.owner, apps.repo, apps.name, apps.branch, apps.clone_url,
			apps.config, COALESCE(apps.host_port, 0), COALESCE(apps.current_deployment_id, 0),
			COALESCE(old.locked_by, ''), COALESCE(old.locked_reason, ''), old.locked_at,
			apps.created_at, apps.updated_at, apps.removed_at,
			COALESCE(apps.pr_number, 0), COALESCE(apps.parent_app_id, 0), apps.head_ref, `+hostsColumn, id))
	if errors.Is(err, pgx.ErrNoRows) {
		before, err = q.App(ctx, id)
		return before, false, err
	}
	if err != nil {
		return App{}, false, fmt.Errorf("unlock app %d: %w", id, err)
	}
	return before, true, nil
}

// LatestDeployment returns app appID's newest deployment, or ErrNotFound.
func (q *Queries) LatestDeployment(ctx context.Context, appID int64) (Deployment, error) {
	d, err := scanDeployment(q.db.QueryRow(ctx, `SELECT `+deploymentColumns+` FROM deployments
		WHERE app_id = $1 ORDER BY id DESC LIMIT 1`, appID))
	if err != nil {
		return Deployment{}, notFound(err, fmt.Sprintf("latest deployment of app %d", appID))
	}
	return d, nil
}
