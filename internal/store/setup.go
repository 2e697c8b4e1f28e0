package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Audit actions of the first-run setup (SPEC §15).
const (
	AuditSetupLinkIssued = "setup.link_issued"
	AuditSetupStarted    = "setup.started"     // the setup page was opened with the link
	AuditSetupRefused    = "setup.refused"     // a bad or replayed link, state or code
	AuditSetupAppCreated = "setup.app_created" // credentials stored
	AuditSetupAdminAdded = "setup.admin_added"
	AuditGitHubAppForgot = "github_app.forgotten"
)

// Setup grant kinds.
const (
	GrantLink  = "link"  // the one-time link logged at start
	GrantState = "state" // the state of a manifest sent to GitHub
	GrantAdmin = "admin" // the right to add the first admin, once the App is stored
)

// ErrGrantUsed and ErrGrantExpired say why a setup grant was refused; an
// unknown grant is ErrNotFound.
var (
	ErrGrantUsed    = errors.New("already used")
	ErrGrantExpired = errors.New("expired")
	// ErrAppStored is returned when credentials are stored already.
	ErrAppStored = errors.New("a GitHub App is already stored")
)

// AppCredentialsRow is the sealed blob of the App created by setup.
type AppCredentialsRow struct {
	KeyID     string
	Sealed    []byte
	CreatedBy string
	CreatedAt time.Time
}

// InsertSetupGrant stores the hash of a new one-time grant.
func (q *Queries) InsertSetupGrant(ctx context.Context, hash []byte, kind string, expires time.Time) error {
	_, err := q.db.Exec(ctx, `INSERT INTO setup_grants (token_hash, kind, expires_at) VALUES ($1, $2, $3)`,
		hash, kind, expires)
	if err != nil {
		return fmt.Errorf("store setup %s: %w", kind, err)
	}
	return nil
}

// CheckSetupGrant reports whether the grant exists, is unused and unexpired
// at now: nil, ErrNotFound, ErrGrantUsed or ErrGrantExpired. With use it
// also marks it used (locking the row), so that it is good once.
func (q *Queries) CheckSetupGrant(ctx context.Context, hash []byte, kind string, now time.Time, use bool) error {
	var expires time.Time
	var used *time.Time
	err := q.db.QueryRow(ctx, `SELECT expires_at, used_at FROM setup_grants WHERE token_hash = $1 AND kind = $2 FOR UPDATE`,
		hash, kind).Scan(&expires, &used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("read setup %s: %w", kind, err)
	case used != nil:
		return ErrGrantUsed
	case !now.Before(expires):
		return ErrGrantExpired
	}
	if !use {
		return nil
	}
	if _, err := q.db.Exec(ctx, `UPDATE setup_grants SET used_at = $2 WHERE token_hash = $1`, hash, now); err != nil {
		return fmt.Errorf("use setup %s: %w", kind, err)
	}
	return nil
}

// PruneSetupGrants removes grants expired before cutoff.
func (q *Queries) PruneSetupGrants(ctx context.Context, cutoff time.Time) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM setup_grants WHERE expires_at < $1`, cutoff); err != nil {
		return fmt.Errorf("prune setup grants: %w", err)
	}
	return nil
}

// InsertAppCredentials stores the App created by setup; ErrAppStored when
// one is stored already (the row is a singleton).
func (q *Queries) InsertAppCredentials(ctx context.Context, row AppCredentialsRow) error {
	tag, err := q.db.Exec(ctx, `INSERT INTO github_app_credentials (key_id, sealed, created_by) VALUES ($1, $2, $3)
		ON CONFLICT (singleton) DO NOTHING`, row.KeyID, row.Sealed, row.CreatedBy)
	if err != nil {
		return fmt.Errorf("store GitHub App credentials: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrAppStored
	}
	return nil
}

// AppCredentials returns the stored App, or ErrNotFound.
func (q *Queries) AppCredentials(ctx context.Context) (AppCredentialsRow, error) {
	var row AppCredentialsRow
	err := q.db.QueryRow(ctx, `SELECT key_id, sealed, created_by, created_at FROM github_app_credentials`).
		Scan(&row.KeyID, &row.Sealed, &row.CreatedBy, &row.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return row, ErrNotFound
	}
	if err != nil {
		return row, fmt.Errorf("read GitHub App credentials: %w", err)
	}
	return row, nil
}

// DeleteAppCredentials removes the stored App; ErrNotFound when none is.
func (q *Queries) DeleteAppCredentials(ctx context.Context) error {
	tag, err := q.db.Exec(ctx, `DELETE FROM github_app_credentials`)
	if err != nil {
		return fmt.Errorf("delete GitHub App credentials: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// ResealAppCredentials replaces the stored blob (key rotation).
func (q *Queries) ResealAppCredentials(ctx context.Context, keyID string, sealed []byte) error {
	if _, err := q.db.Exec(ctx, `UPDATE github_app_credentials SET key_id = $1, sealed = $2`, keyID, sealed); err != nil {
		return fmt.Errorf("re-encrypt GitHub App credentials: %w", err)
	}
	return nil
}
