package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// AuditAppRemoved records that an app left its repository's .keystone.yml.
const AuditAppRemoved = "app.removed"

// InstanceID returns the id of this Keystone database, made by its first
// migration: the value of the io.keystone.instance label.
func (q *Queries) InstanceID(ctx context.Context) (string, error) {
	var id string
	if err := q.db.QueryRow(ctx, `SELECT id::text FROM keystone_instance`).Scan(&id); err != nil {
		return "", notFound(err, "instance id")
	}
	return id, nil
}

// AppSpec is what a repository's .keystone.yml says about one app.
type AppSpec struct {
	InstallationID int64
	Owner, Repo    string
	Name           string
	Branch         string
	CloneURL       string
	Config         json.RawMessage
}

// UpsertApp creates the app or brings it in line with spec (restoring it if
// it was removed), and returns it locked FOR UPDATE in the caller's
// transaction. Owner and repository match case-insensitively, as on GitHub.
func (q *Queries) UpsertApp(ctx context.Context, spec AppSpec) (App, error) {
	a, err := scanApp(q.db.QueryRow(ctx, `
		UPDATE apps SET installation_id = $1, branch = $5, clone_url = $6, config = $7,
			removed_at = NULL, updated_at = now()
		WHERE lower(owner) = lower($2) AND lower(repo) = lower($3) AND name = $4 AND pr_number IS NULL
		RETURNING `+appColumns,
		spec.InstallationID, spec.Owner, spec.Repo, spec.Name, noNUL(spec.Branch), noNUL(spec.CloneURL), spec.Config))
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return App{}, fmt.Errorf("update app %s/%s/%s: %w", spec.Owner, spec.Repo, spec.Name, err)
	}
	a, err = scanApp(q.db.QueryRow(ctx, `
		INSERT INTO apps (installation_id, owner, repo, name, branch, clone_url, config)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		RETURNING `+appColumns,
		spec.InstallationID, noNUL(spec.Owner), noNUL(spec.Repo), spec.Name, noNUL(spec.Branch), noNUL(spec.CloneURL), spec.Config))
	if err != nil {
		return App{}, fmt.Errorf("create app %s/%s/%s: %w", spec.Owner, spec.Repo, spec.Name, err)
	}
	return a, nil
}

// AppsOfRepository returns the apps of owner/repo that are not removed, by
// name; previews are not among them.
func (q *Queries) AppsOfRepository(ctx context.Context, owner, repo string) ([]App, error) {
	return q.apps(ctx, `WHERE lower(owner) = lower($1) AND lower(repo) = lower($2) AND removed_at IS NULL
		AND pr_number IS NULL ORDER BY name`,
		owner, repo)
}

// AllApps returns every app, removed ones included, by id.
func (q *Queries) AllApps(ctx context.Context) ([]App, error) {
	return q.apps(ctx, `ORDER BY id`)
}

func (q *Queries) apps(ctx context.Context, where string, args ...any) ([]App, error) {
	rows, err := q.db.Query(ctx, `SELECT `+appColumns+` FROM apps `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	defer rows.Close()
	var out []App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// LockAppRow returns the app locked FOR UPDATE until the caller's transaction
// ends: deployments of one app are created one transaction at a time.
func (q *Queries) LockAppRow(ctx context.Context, id int64) (App, error) {
	a, err := scanApp(q.db.QueryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return App{}, notFound(err, fmt.Sprintf("lock app %d", id))
	}
	return a, nil
}

// MoveApp makes the app track another branch, with that branch's config.
func (q *Queries) MoveApp(ctx context.Context, id int64, branch string, config json.RawMessage) error {
	tag, err := q.db.Exec(ctx, `UPDATE apps SET branch = $2, config = $3, updated_at = now() WHERE id = $1`,
		id, noNUL(branch), config)
	if err != nil {
		return fmt.Errorf("move app %d to branch %s: %w", id, branch, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("move app %d: %w", id, ErrNotFound)
	}
	return nil
}

// RemoveApp marks the app and its previews removed, releases their host
// ports and host names and deletes the app's secrets (preview secrets included), returning
// their names for the audit event: a later app of the same name starts with
// none. Their deployments are kept; reconciliation stops their containers
// and removes their images.
func (q *Queries) RemoveApp(ctx context.Context, id int64) (secretsDeleted []string, err error) {
	if _, err := q.db.Exec(ctx, `UPDATE apps SET removed_at = COALESCE(removed_at, now()), host_port = NULL,
		updated_at = now() WHERE parent_app_id = $1`, id); err != nil {
		return nil, fmt.Errorf("remove the previews of app %d: %w", id, err)
	}
	var owner, repo, name string
	err = q.db.QueryRow(ctx, `UPDATE apps SET removed_at = COALESCE(removed_at, now()), host_port = NULL,
		updated_at = now() WHERE id = $1 RETURNING lower(owner), lower(repo), name`, id).Scan(&owner, &repo, &name)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("remove app %d", id))
	}
	// Its host names and its previews' are free for other apps at once.
	if _, err := q.db.Exec(ctx, `DELETE FROM app_hosts WHERE app_id IN
		(SELECT id FROM apps WHERE id = $1 OR parent_app_id = $1)`, id); err != nil {
		return nil, fmt.Errorf("release the host names of removed app %d: %w", id, err)
	}
	rows, err := q.db.Query(ctx, `DELETE FROM secrets WHERE owner = $1 AND repo = $2 AND app = $3 RETURNING name`,
		owner, repo, name)
	if err != nil {
		return nil, fmt.Errorf("delete the secrets of removed app %d: %w", id, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("delete the secrets of removed app %d: %w", id, err)
	}
	sort.Strings(names)
	return names, nil
}

// SetCurrentDeployment records that deployment serves the app now.
func (q *Queries) SetCurrentDeployment(ctx context.Context, appID, deploymentID int64) error {
	tag, err := q.db.Exec(ctx, `UPDATE apps SET current_deployment_id = $2, updated_at = now() WHERE id = $1`,
		appID, deploymentID)
	if err != nil {
		return fmt.Errorf("set current deployment of app %d: %w", appID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set current deployment of app %d: %w", appID, ErrNotFound)
	}
	return nil
}

// ErrNoFreePort is returned when every port of the range is held by an app
// or in use on the host.
var ErrNoFreePort = errors.New("no free port")

// AllocatePort returns the app's host port, giving it one first if it has
// none: the lowest port of [first, last] that no other app holds and that
// free accepts (free tries the host). Concurrent callers for different apps
// never get the same port: the UNIQUE constraint decides, and the loser
// tries again with the next port.
func (s *Store) AllocatePort(ctx context.Context, appID int64, first, last int, free func(port int) bool) (int, error) {
	for attempt := 0; attempt < 50; attempt++ {
		var port int
		err := s.InTx(ctx, func(_ pgx.Tx, q *Queries) error {
			var have *int
			if err := q.db.QueryRow(ctx, `SELECT host_port FROM apps WHERE id = $1 FOR UPDATE`, appID).Scan(&have); err != nil {
				return notFound(err, fmt.Sprintf("app %d", appID))
			}
			if have != nil {
				port = *have
				return nil
			}
			taken := map[int]bool{}
			rows, err := q.db.Query(ctx, `SELECT host_port FROM apps WHERE host_port BETWEEN $1 AND $2`, first, last)
			if err != nil {
				return err
			}
			for rows.Next() {
				var p int
				if err := rows.Scan(&p); err != nil {
					rows.Close()
					return err
				}
				taken[p] = true
			}
			rows.Close()
			for p := first; p <= last; p++ {
				if taken[p] || !free(p) {
					continue
				}
				if _, err := q.db.Exec(ctx, `UPDATE apps SET host_port = $2, updated_at = now() WHERE id = $1`, appID, p); err != nil {
					return err
				}
				port = p
				return nil
			}
			return fmt.Errorf("%w in %d-%d", ErrNoFreePort, first, last)
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			continue // another app took this port first
		}
		if err != nil {
			return 0, fmt.Errorf("allocate a port for app %d: %w", appID, err)
		}
		return port, nil
	}
	return 0, fmt.Errorf("allocate a port for app %d: too many concurrent allocations", appID)
}
