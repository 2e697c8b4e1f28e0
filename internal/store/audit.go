package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Audit actions (SPEC §11). Targets are "owner/repo/app", "user:<name>",
// "deployment:<id>" and the like; details hold the rest.
const (
	AuditDeployRequested = "deployment.requested" // deploy, update, rollback, redeploy queued
	AuditDeployFinished  = "deployment.finished"  // with its outcome in details
	AuditCommandAccepted = "command.accepted"
	AuditCommandDenied   = "command.denied"
	AuditAppLocked       = "app.locked"
	AuditAppUnlocked     = "app.unlocked"
	AuditLoginSucceeded  = "login.succeeded"
	AuditLoginFailed     = "login.failed"
	AuditLogout          = "logout"
	AuditUserAdded       = "user.added"
	AuditUserRemoved     = "user.removed"
	AuditSecretSet       = "secret.set"
	AuditSecretUnset     = "secret.unset"
	AuditKeysRotated     = "keys.rotated"
)

// AuditEvent is one entry of the audit trail.
type AuditEvent struct {
	ID      int64
	At      time.Time
	Actor   string // a GitHub login, a Keystone user, or "keystone"
	Action  string
	Target  string
	Details map[string]any
}

// AppendAudit records e. Call it in the transaction of the change it
// describes, so the trail never disagrees with what happened.
func (q *Queries) AppendAudit(ctx context.Context, e AuditEvent) error {
	details, err := json.Marshal(e.Details)
	if err != nil {
		return fmt.Errorf("audit %s: encode details: %w", e.Action, err)
	}
	if e.Details == nil {
		details = []byte("{}")
	}
	_, err = q.db.Exec(ctx, `INSERT INTO audit_events (actor, action, target, details) VALUES ($1, $2, $3, $4)`,
		noNUL(e.Actor), e.Action, noNUL(e.Target), details)
	if err != nil {
		return fmt.Errorf("audit %s of %s: %w", e.Action, e.Target, err)
	}
	return nil
}
