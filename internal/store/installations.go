package store

import (
	"context"
	"fmt"
)

// Installation is a GitHub App installation.
type Installation struct {
	ID           int64
	AccountLogin string
	AccountType  string
	Suspended    bool
	Deleted      bool
}

// Repository is a repository an installation grants Keystone.
type Repository struct {
	ID       int64
	FullName string
	Private  bool
}

// UpsertInstallation creates or refreshes an installation, clearing deletion.
func (q *Queries) UpsertInstallation(ctx context.Context, in Installation) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO installations (id, account_login, account_type, suspended_at)
		VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)
		ON CONFLICT (id) DO UPDATE SET
			account_login = EXCLUDED.account_login,
			account_type = EXCLUDED.account_type,
			suspended_at = CASE WHEN $4 THEN COALESCE(installations.suspended_at, now()) END,
			deleted_at = NULL,
			updated_at = now()`,
		in.ID, noNUL(in.AccountLogin), noNUL(in.AccountType), in.Suspended)
	if err != nil {
		return fmt.Errorf("upsert installation %d: %w", in.ID, err)
	}
	return nil
}

// DeleteInstallation marks the installation and its repositories gone. Rows are
// kept: deployments still refer to what was deployed.
func (q *Queries) DeleteInstallation(ctx context.Context, id int64) error {
	if _, err := q.db.Exec(ctx, `
		UPDATE installations SET deleted_at = now(), updated_at = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete installation %d: %w", id, err)
	}
	if _, err := q.db.Exec(ctx, `
		UPDATE repositories SET removed_at = now(), updated_at = now()
		WHERE installation_id = $1 AND removed_at IS NULL`, id); err != nil {
		return fmt.Errorf("remove repositories of installation %d: %w", id, err)
	}
	return nil
}

// AddRepositories records repositories granted to the installation.
func (q *Queries) AddRepositories(ctx context.Context, installationID int64, repos []Repository) error {
	for _, r := range repos {
		_, err := q.db.Exec(ctx, `
			INSERT INTO repositories (id, installation_id, full_name, private)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET
				installation_id = EXCLUDED.installation_id,
				full_name = EXCLUDED.full_name,
				private = EXCLUDED.private,
				removed_at = NULL,
				updated_at = now()`,
			r.ID, installationID, noNUL(r.FullName), r.Private)
		if err != nil {
			return fmt.Errorf("add repository %s to installation %d: %w", r.FullName, installationID, err)
		}
	}
	return nil
}

// RemoveRepositories records repositories no longer granted to the installation.
func (q *Queries) RemoveRepositories(ctx context.Context, installationID int64, repos []Repository) error {
	for _, r := range repos {
		_, err := q.db.Exec(ctx, `
			UPDATE repositories SET removed_at = now(), updated_at = now()
			WHERE id = $1 AND installation_id = $2`, r.ID, installationID)
		if err != nil {
			return fmt.Errorf("remove repository %s from installation %d: %w", r.FullName, installationID, err)
		}
	}
	return nil
}

// Installation returns one installation.
func (q *Queries) Installation(ctx context.Context, id int64) (Installation, error) {
	var in Installation
	err := q.db.QueryRow(ctx, `
		SELECT id, account_login, account_type, suspended_at IS NOT NULL, deleted_at IS NOT NULL
		FROM installations WHERE id = $1`, id).
		Scan(&in.ID, &in.AccountLogin, &in.AccountType, &in.Suspended, &in.Deleted)
	if err != nil {
		return Installation{}, notFound(err, fmt.Sprintf("installation %d", id))
	}
	return in, nil
}

// InstallationRepositories lists the repositories currently granted, by name.
func (q *Queries) InstallationRepositories(ctx context.Context, installationID int64) ([]Repository, error) {
	rows, err := q.db.Query(ctx, `
		SELECT id, full_name, private FROM repositories
		WHERE installation_id = $1 AND removed_at IS NULL ORDER BY full_name`, installationID)
	if err != nil {
		return nil, fmt.Errorf("list repositories of installation %d: %w", installationID, err)
	}
	defer rows.Close()
	var out []Repository
	for rows.Next() {
		var r Repository
		if err := rows.Scan(&r.ID, &r.FullName, &r.Private); err != nil {
			return nil, fmt.Errorf("list repositories of installation %d: %w", installationID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
