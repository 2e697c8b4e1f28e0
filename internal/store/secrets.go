package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Secret is one encrypted secret variable of an app. Owner and Repo are
// lower-case; Sealed is opaque here (internal/secrets seals and opens it).
type Secret struct {
	ID        int64
	Owner     string
	Repo      string
	App       string
	Name      string
	KeyID     string
	Sealed    []byte
	UpdatedAt time.Time
	UpdatedBy string
	// Preview: the secret is given to the app's pull-request previews only,
	// never to production; a production secret never to a preview.
	Preview bool
}

// Target is owner/repo/app, the audit target of a secret change.
func (s Secret) Target() string {
	if s.Preview {
		return s.Owner + "/" + s.Repo + "/" + s.App + " (previews)"
	}
	return s.Owner + "/" + s.Repo + "/" + s.App
}

// PutSecret stores s, replacing the app's secret of the same name, and
// reports whether it was new.
func (q *Queries) PutSecret(ctx context.Context, s Secret) (created bool, err error) {
	err = q.db.QueryRow(ctx, `INSERT INTO secrets (owner, repo, app, name, key_id, sealed, updated_by, preview)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (owner, repo, app, name, preview) DO UPDATE
		SET key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed, updated_by = EXCLUDED.updated_by, updated_at = now()
		RETURNING xmax = 0`,
		s.Owner, s.Repo, s.App, s.Name, s.KeyID, s.Sealed, noNUL(s.UpdatedBy), s.Preview).Scan(&created)
	if err != nil {
		return false, fmt.Errorf("store secret %s of %s: %w", s.Name, s.Target(), err)
	}
	return created, nil
}

// DeleteSecret removes the secret name of owner/repo/app (its preview
// secret if preview); ErrNotFound if it is not set.
func (q *Queries) DeleteSecret(ctx context.Context, owner, repo, app, name string, preview bool) error {
	tag, err := q.db.Exec(ctx, `DELETE FROM secrets WHERE owner = $1 AND repo = $2 AND app = $3 AND name = $4
		AND preview = $5`, owner, repo, app, name, preview)
	if err != nil {
		return fmt.Errorf("delete secret %s of %s/%s/%s: %w", name, owner, repo, app, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("secret %s of %s/%s/%s: %w", name, owner, repo, app, ErrNotFound)
	}
	return nil
}

// SecretNames lists the names of the secrets of owner/repo/app (its
// preview secrets if preview), sorted.
func (q *Queries) SecretNames(ctx context.Context, owner, repo, app string, preview bool) ([]string, error) {
	rows, err := q.db.Query(ctx, `SELECT name FROM secrets WHERE owner = $1 AND repo = $2 AND app = $3
		AND preview = $4 ORDER BY name`, owner, repo, app, preview)
	if err != nil {
		return nil, fmt.Errorf("list secrets of %s/%s/%s: %w", owner, repo, app, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list secrets of %s/%s/%s: %w", owner, repo, app, err)
	}
	return names, nil
}

const secretColumns = `id, owner, repo, app, name, key_id, sealed, updated_at, updated_by, preview`

func scanSecret(row pgx.CollectableRow) (Secret, error) {
	var s Secret
	err := row.Scan(&s.ID, &s.Owner, &s.Repo, &s.App, &s.Name, &s.KeyID, &s.Sealed, &s.UpdatedAt, &s.UpdatedBy, &s.Preview)
	return s, err
}

// AppSecretRows returns the encrypted secrets of owner/repo/app, sorted by
// name: its preview secrets if preview, else its production ones.
func (q *Queries) AppSecretRows(ctx context.Context, owner, repo, app string, preview bool) ([]Secret, error) {
	rows, err := q.db.Query(ctx, `SELECT `+secretColumns+` FROM secrets
		WHERE owner = $1 AND repo = $2 AND app = $3 AND preview = $4 ORDER BY name`, owner, repo, app, preview)
	if err != nil {
		return nil, fmt.Errorf("read secrets of %s/%s/%s: %w", owner, repo, app, err)
	}
	secrets, err := pgx.CollectRows(rows, scanSecret)
	if err != nil {
		return nil, fmt.Errorf("read secrets of %s/%s/%s: %w", owner, repo, app, err)
	}
	return secrets, nil
}

// SecretIDsNotUnderKey returns up to limit ids, above after and in order, of
// secrets encrypted under another key than keyID.
func (q *Queries) SecretIDsNotUnderKey(ctx context.Context, keyID string, after int64, limit int) ([]int64, error) {
	rows, err := q.db.Query(ctx, `SELECT id FROM secrets WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3`,
		keyID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("find secrets to re-encrypt: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("find secrets to re-encrypt: %w", err)
	}
	return ids, nil
}

// LockSecret returns the secret id, locked until the transaction ends;
// ErrNotFound if it is gone.
func (q *Queries) LockSecret(ctx context.Context, id int64) (Secret, error) {
	rows, err := q.db.Query(ctx, `SELECT `+secretColumns+` FROM secrets WHERE id = $1 FOR UPDATE`, id)
	if err != nil {
		return Secret{}, fmt.Errorf("lock secret %d: %w", id, err)
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanSecret)
	if err != nil {
		return Secret{}, notFound(err, fmt.Sprintf("lock secret %d", id))
	}
	return s, nil
}

// ResealSecret replaces the ciphertext of secret id, keeping who changed it last.
func (q *Queries) ResealSecret(ctx context.Context, id int64, keyID string, sealed []byte) error {
	tag, err := q.db.Exec(ctx, `UPDATE secrets SET key_id = $2, sealed = $3 WHERE id = $1`, id, keyID, sealed)
	if err != nil {
		return fmt.Errorf("re-encrypt secret %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("re-encrypt secret %d: %w", id, ErrNotFound)
	}
	return nil
}

// SecretsPerKey counts the secrets encrypted under each key id.
func (q *Queries) SecretsPerKey(ctx context.Context) (map[string]int, error) {
	rows, err := q.db.Query(ctx, `SELECT key_id, count(*) FROM secrets GROUP BY key_id`)
	if err != nil {
		return nil, fmt.Errorf("count secrets per key: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("count secrets per key: %w", err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count secrets per key: %w", err)
	}
	return counts, nil
}
