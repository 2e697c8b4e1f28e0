package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RedeliveryRun is one pass over the App's recent webhook deliveries.
type RedeliveryRun struct {
	StartedAt   time.Time
	Listed      int
	Missing     int
	Redelivered int
	// Complete: the pass read back to its window and asked for every
	// missing delivery it found.
	Complete bool
}

// LastCompleteRedeliveryRun returns when the last complete pass started;
// ok is false when there was none.
func (q *Queries) LastCompleteRedeliveryRun(ctx context.Context) (startedAt time.Time, ok bool, err error) {
	var t *time.Time
	if err := q.db.QueryRow(ctx, `SELECT max(started_at) FROM webhook_redelivery_runs WHERE complete`).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("read the last redelivery pass: %w", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}

// RecordRedeliveryRun stores a finished pass and forgets passes and
// requests older than GitHub's three days.
func (q *Queries) RecordRedeliveryRun(ctx context.Context, r RedeliveryRun) error {
	_, err := q.db.Exec(ctx, `INSERT INTO webhook_redelivery_runs (started_at, listed, missing, redelivered, complete)
		VALUES ($1, $2, $3, $4, $5)`, r.StartedAt, r.Listed, r.Missing, r.Redelivered, r.Complete)
	if err != nil {
		return fmt.Errorf("record redelivery pass: %w", err)
	}
	if _, err := q.db.Exec(ctx, `DELETE FROM webhook_redelivery_runs WHERE started_at < now() - interval '4 days'`); err != nil {
		return fmt.Errorf("prune redelivery passes: %w", err)
	}
	if _, err := q.db.Exec(ctx, `DELETE FROM webhook_redelivery_requests WHERE last_requested_at < now() - interval '4 days'`); err != nil {
		return fmt.Errorf("prune redelivery requests: %w", err)
	}
	return nil
}

// RedeliveryRequests returns how many times a redelivery of guid was asked
// for and when last (n 0: never).
func (q *Queries) RedeliveryRequests(ctx context.Context, guid string) (n int, last time.Time, err error) {
	err = q.db.QueryRow(ctx, `SELECT requests, last_requested_at FROM webhook_redelivery_requests WHERE guid = $1`,
		noNUL(guid)).Scan(&n, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("read redelivery requests of %s: %w", guid, err)
	}
	return n, last, nil
}

// NoteRedeliveryRequest counts a redelivery of guid asked for now.
func (q *Queries) NoteRedeliveryRequest(ctx context.Context, guid string, githubID int64) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO webhook_redelivery_requests (guid, github_id) VALUES ($1, $2)
		ON CONFLICT (guid) DO UPDATE SET requests = webhook_redelivery_requests.requests + 1,
			github_id = EXCLUDED.github_id, last_requested_at = now()`, noNUL(guid), githubID)
	if err != nil {
		return fmt.Errorf("note redelivery of %s: %w", guid, err)
	}
	return nil
}
