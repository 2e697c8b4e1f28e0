package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// AuditAppAllowed records an admin's allowance for an app to deploy from a
// branch that the default branch's .keystone.yml does not give it.
const AuditAppAllowed = "app.allowed"

// AllowApp records, with its audit event, that pushes to branch may create,
// re-create or re-point app name of owner/repo (replacing an earlier
// allowance for that app). Only an admin may call it.
func (q *Queries) AllowApp(ctx context.Context, owner, repo, name, branch, actor string) error {
	owner, repo = strings.ToLower(owner), strings.ToLower(repo)
	if _, err := q.db.Exec(ctx, `INSERT INTO app_allowances (owner, repo, app, branch, allowed_by)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (owner, repo, app) DO UPDATE
		SET branch = EXCLUDED.branch, allowed_by = EXCLUDED.allowed_by, created_at = now()`,
		noNUL(owner), noNUL(repo), noNUL(name), noNUL(branch), noNUL(actor)); err != nil {
		return fmt.Errorf("allow app %s/%s/%s on branch %s: %w", owner, repo, name, branch, err)
	}
	return q.AppendAudit(ctx, AuditEvent{Actor: actor, Action: AuditAppAllowed, Target: owner + "/" + repo + "/" + name,
		Details: map[string]any{"branch": branch}})
}

// AllowedBranch returns the branch an admin allowed app name of owner/repo
// to deploy from, or "" when there is no allowance.
func (q *Queries) AllowedBranch(ctx context.Context, owner, repo, name string) (string, error) {
	var branch string
	err := q.db.QueryRow(ctx, `SELECT branch FROM app_allowances WHERE owner = lower($1) AND repo = lower($2) AND app = $3`,
		owner, repo, name).Scan(&branch)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the allowance of app %s/%s/%s: %w", owner, repo, name, err)
	}
	return branch, nil
}
