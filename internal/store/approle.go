package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CurrentRole is the role this store connects as.
func (s *Store) CurrentRole(ctx context.Context) (string, error) {
	var role string
	if err := s.pool.QueryRow(ctx, `SELECT current_user`).Scan(&role); err != nil {
		return "", fmt.Errorf("read the database role: %w", err)
	}
	return role, nil
}

// AuditProtected reports whether the role this store connects as cannot
// rewrite the audit trail: it is no superuser, does not own audit_events
// (an owner may drop the append-only triggers) and holds neither UPDATE,
// DELETE nor TRUNCATE on it.
func (s *Store) AuditProtected(ctx context.Context) (bool, error) {
	var protected bool
	err := s.pool.QueryRow(ctx, `SELECT NOT r.rolsuper
			AND NOT pg_has_role(current_user, c.relowner, 'USAGE')
			AND NOT has_table_privilege(current_user, c.oid, 'UPDATE')
			AND NOT has_table_privilege(current_user, c.oid, 'DELETE')
			AND NOT has_table_privilege(current_user, c.oid, 'TRUNCATE')
		FROM pg_class c, pg_roles r
		WHERE c.oid = 'public.audit_events'::regclass AND r.rolname = current_user`).Scan(&protected)
	if err != nil {
		return false, fmt.Errorf("check the audit trail's protection: %w", err)
	}
	return protected, nil
}

// GrantAppRole gives role what `keystone serve` and the CLI need, with the
// audit trail read and append only (docs/runbook.md, "Audit role"). It runs
// as the role owning Keystone's tables (KEYSTONE_MIGRATE_DATABASE_URL),
// after migrating; tables later migrations create reach role too. It is
// idempotent, and refuses to run for its own role, which would keep every
// right.
func (s *Store) GrantAppRole(ctx context.Context, role string) error {
	me, err := s.CurrentRole(ctx)
	if err != nil {
		return err
	}
	if role == me {
		return errors.New("grant the app role: DATABASE_URL connects as the migrating role " + me +
			"; give Keystone a role of its own, which must not own the tables")
	}
	r := pgx.Identifier{role}.Sanitize()
	return s.InTx(ctx, func(tx pgx.Tx, _ *Queries) error {
		for _, sql := range []string{
			`GRANT USAGE ON SCHEMA public TO ` + r,
			`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ` + r,
			`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ` + r,
			`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ` + r,
			`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO ` + r,
			// The audit trail: read and append only; the chain head moves, never goes.
			`REVOKE ALL ON audit_events FROM ` + r,
			`GRANT SELECT, INSERT ON audit_events TO ` + r,
			`REVOKE ALL ON audit_chain_head FROM ` + r,
			`GRANT SELECT, UPDATE ON audit_chain_head TO ` + r,
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("grant the app role %s: %s: %w", role, sql, err)
			}
		}
		return nil
	})
}

// MigrateAs applies the migrations as the role of ownerURL
// (KEYSTONE_MIGRATE_DATABASE_URL) and grants app's role what it needs to run
// with the audit trail append-only. With ownerURL "" app migrates itself,
// as before the roles were split.
func MigrateAs(ctx context.Context, ownerURL string, app *Store) error {
	if ownerURL == "" {
		return app.Migrate(ctx)
	}
	role, err := app.CurrentRole(ctx)
	if err != nil {
		return err
	}
	owner, err := Open(ctx, ownerURL, MinConns(1))
	if err != nil {
		return fmt.Errorf("KEYSTONE_MIGRATE_DATABASE_URL: %w", err)
	}
	defer owner.Close()
	if err := owner.Migrate(ctx); err != nil {
		return err
	}
	return owner.GrantAppRole(ctx, role)
}
