package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// UpsertPreview returns the preview of pull request pr of parent (a
// production app), locked FOR UPDATE in the caller's transaction: created
// with config, or brought in line with it (restored if it was removed).
// The row is found by parent id and number, never by name: a production
// app that happens to be named <app>-pr-<N> is never taken over (creating
// the preview then fails on the name's uniqueness).
func (q *Queries) UpsertPreview(ctx context.Context, parent App, pr int, headRef string, config json.RawMessage) (App, error) {
	if parent.Preview() || pr <= 0 {
		return App{}, fmt.Errorf("preview %d of app %d: not a production app and pull request", pr, parent.ID)
	}
	a, err := scanApp(q.db.QueryRow(ctx, `
		UPDATE apps SET installation_id = $3, branch = $4, clone_url = $5, config = $6, head_ref = $7,
			removed_at = NULL, updated_at = now()
		WHERE parent_app_id = $1 AND pr_number = $2
		RETURNING `+appColumns,
		parent.ID, pr, parent.InstallationID, parent.Branch, parent.CloneURL, config, noNUL(headRef)))
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return App{}, fmt.Errorf("update preview %d of %s: %w", pr, parent.Key(), err)
	}
	a, err = scanApp(q.db.QueryRow(ctx, `
		INSERT INTO apps (installation_id, owner, repo, name, branch, clone_url, config, pr_number, parent_app_id, head_ref)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		RETURNING `+appColumns,
		parent.InstallationID, parent.Owner, parent.Repo, PreviewName(parent.Name, pr), parent.Branch, parent.CloneURL,
		config, pr, parent.ID, noNUL(headRef)))
	if err != nil {
		return App{}, fmt.Errorf("create preview %d of %s: %w", pr, parent.Key(), err)
	}
	return a, nil
}

// PreviewsOfPullRequest returns the previews of pull request pr of
// owner/repo that are not removed, by name.
func (q *Queries) PreviewsOfPullRequest(ctx context.Context, owner, repo string, pr int) ([]App, error) {
	return q.apps(ctx, `WHERE lower(owner) = lower($1) AND lower(repo) = lower($2) AND pr_number = $3
		AND removed_at IS NULL ORDER BY name`, noNUL(owner), noNUL(repo), pr)
}

// OpenPreviews returns every preview not removed, by id.
func (q *Queries) OpenPreviews(ctx context.Context) ([]App, error) {
	return q.apps(ctx, `WHERE pr_number IS NOT NULL AND removed_at IS NULL ORDER BY id`)
}

// PreviewsOfApp returns the previews of the app with id parentID that are
// not removed, by pull request number.
func (q *Queries) PreviewsOfApp(ctx context.Context, parentID int64) ([]App, error) {
	return q.apps(ctx, `WHERE parent_app_id = $1 AND removed_at IS NULL ORDER BY pr_number`, parentID)
}

// LockPreviews serialises the creation of previews, so that the count
// KEYSTONE_MAX_PREVIEWS caps is exact under concurrent pull requests: a
// transaction-scoped advisory lock.
func (q *Queries) LockPreviews(ctx context.Context) error {
	const previewsLockKey = 0x4b53_5052_4556_5753 // "KSPREVWS"
	if _, err := q.db.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(previewsLockKey)); err != nil {
		return fmt.Errorf("lock previews: %w", err)
	}
	return nil
}
