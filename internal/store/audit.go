package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystone-app/keystone/internal/audit"
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
	At      time.Time // zero: now; stored truncated to microseconds
	Actor   string    // a GitHub login, a Keystone user, or "keystone"
	Action  string
	Target  string
	Details map[string]any
}

// beginner is what every DBTX also is: a pool or connection begins a
// transaction, a transaction a savepoint.
type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// AppendAudit records e, chained to the event before it (see package audit).
// Call it in the transaction of the change it describes, so the trail never
// disagrees with what happened, and last in that transaction: it locks the
// chain's head until the transaction ends, which serialises every writer.
// On a pool it runs in a transaction of its own. In a REPEATABLE READ or
// SERIALIZABLE transaction that started before another event was appended it
// fails with a serialization error (retry the transaction) rather than fork
// the chain.
func (q *Queries) AppendAudit(ctx context.Context, e AuditEvent) error {
	details, err := audit.CanonicalDetails(e.Details)
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	rec := audit.Record{
		At: at.UTC().Truncate(time.Microsecond), Actor: auditText(e.Actor), Action: auditText(e.Action),
		Target: auditText(e.Target), Details: details,
	}
	b, ok := q.db.(beginner)
	if !ok {
		return fmt.Errorf("audit %s: %T cannot begin a transaction", e.Action, q.db)
	}
	tx, err := b.Begin(ctx)
	if err != nil {
		return fmt.Errorf("audit %s of %s: begin: %w", e.Action, e.Target, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after commit
	if err := appendChained(ctx, tx, &rec); err != nil {
		return fmt.Errorf("audit %s of %s: %w", e.Action, e.Target, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("audit %s of %s: commit: %w", e.Action, e.Target, err)
	}
	return nil
}

// appendChained locks the head, links rec to it, inserts rec and moves the head.
func appendChained(ctx context.Context, tx pgx.Tx, rec *audit.Record) error {
	var lastID int64
	var prev []byte
	err := tx.QueryRow(ctx, `SELECT last_id, hash FROM audit_chain_head FOR UPDATE`).Scan(&lastID, &prev)
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.New("the audit chain head row is missing (migration 00200 creates it)")
	}
	if err != nil {
		return fmt.Errorf("lock chain head: %w", err)
	}
	rec.PrevHash = prev
	if prev == nil {
		rec.PrevHash = audit.Genesis()
	}
	if err := tx.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('audit_events', 'id'))`).Scan(&rec.ID); err != nil {
		return fmt.Errorf("next event id: %w", err)
	}
	if rec.Hash, err = audit.Hash(*rec); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_events (id, at, actor, action, target, details, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)`,
		rec.ID, rec.At, rec.Actor, rec.Action, rec.Target, string(rec.Details), rec.PrevHash, rec.Hash)
	if err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_chain_head SET last_id = $1, hash = $2`, rec.ID, rec.Hash); err != nil {
		return fmt.Errorf("move chain head: %w", err)
	}
	return nil
}

// auditText makes s storable as PostgreSQL text exactly as hashed: no NUL,
// valid UTF-8.
func auditText(s string) string { return strings.ToValidUTF8(noNUL(s), "\uFFFD") }

// auditPageSize is how many events WalkAudit reads at a time.
const auditPageSize = 1000

// WalkAudit implements audit.Source: every event in id order and the chain
// head, from one read-only snapshot, read a page at a time.
func (s *Store) WalkAudit(ctx context.Context, fn func(audit.Record) error) (audit.Head, error) {
	var head audit.Head
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := pgx.BeginTxFunc(ctx, s.pool, opts, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT last_id, hash, pre_chain_last_id FROM audit_chain_head`).Scan(&head.LastID, &head.Hash, &head.PreChainLastID)
		if err != nil {
			return fmt.Errorf("read audit chain head: %w", err)
		}
		after := int64(0)
		for {
			page, err := auditPage(ctx, tx, after)
			if err != nil {
				return err
			}
			for _, r := range page {
				if err := fn(r); err != nil {
					return err
				}
				after = r.ID
			}
			if len(page) < auditPageSize {
				return nil
			}
		}
	})
	return head, err
}

func auditPage(ctx context.Context, tx pgx.Tx, after int64) ([]audit.Record, error) {
	rows, err := tx.Query(ctx, `SELECT id, at, actor, action, target, details::text, prev_hash, hash
		FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2`, after, auditPageSize)
	if err != nil {
		return nil, fmt.Errorf("read audit events after %d: %w", after, err)
	}
	page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (audit.Record, error) {
		var r audit.Record
		var details string
		err := row.Scan(&r.ID, &r.At, &r.Actor, &r.Action, &r.Target, &details, &r.PrevHash, &r.Hash)
		r.Details = []byte(details)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit events after %d: %w", after, err)
	}
	return page, nil
}

// AuditHead returns the chain's head as the writers recorded it: the last
// chained event's id and hash (0 and nil before the first).
func (q *Queries) AuditHead(ctx context.Context) (int64, []byte, error) {
	var id int64
	var hash []byte
	if err := q.db.QueryRow(ctx, `SELECT last_id, hash FROM audit_chain_head`).Scan(&id, &hash); err != nil {
		return 0, nil, fmt.Errorf("read the audit chain head: %w", err)
	}
	return id, hash, nil
}
