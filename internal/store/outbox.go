package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OutboxChannel is the PostgreSQL notification channel told, at commit, of
// every new outbox entry; its payload is the installation id.
const OutboxChannel = "keystone_outbox"

// Outbox entry states.
const (
	OutboxPending  = "pending"
	OutboxSent     = "sent"
	OutboxFailed   = "failed"   // GitHub refused it for good, or it was too old to send
	OutboxSquashed = "squashed" // a later edit of the same comment replaced it before it was sent
	OutboxSkipped  = "skipped"  // nothing to send it to (a commit with no pull request)
)

// OutboxEntry is one thing to say to GitHub.
type OutboxEntry struct {
	ID             int64
	InstallationID int64
	Owner, Repo    string
	Kind           string // status, comment or reaction
	OrderingKey    string
	Payload        json.RawMessage
	State          string
	Attempts       int
	NextAttemptAt  time.Time
	LastError      string
	CreatedAt      time.Time
	FinishedAt     *time.Time
}

const outboxColumns = `id, installation_id, owner, repo, kind, ordering_key, payload, state, attempts,
	next_attempt_at, last_error, created_at, finished_at`

func scanOutboxEntry(row interface{ Scan(...any) error }) (OutboxEntry, error) {
	var e OutboxEntry
	err := row.Scan(&e.ID, &e.InstallationID, &e.Owner, &e.Repo, &e.Kind, &e.OrderingKey, &e.Payload, &e.State,
		&e.Attempts, &e.NextAttemptAt, &e.LastError, &e.CreatedAt, &e.FinishedAt)
	return e, err
}

// InsertOutboxEntry adds a pending entry and notifies OutboxChannel, which
// listeners hear when the caller's transaction commits. q must be bound to
// the transaction of the change the entry reports. The entry gets its place
// in its key (seq) when that transaction commits, so that a key's entries go
// out in commit order (see migrations/00400_github_outbox.sql).
func (q *Queries) InsertOutboxEntry(ctx context.Context, e OutboxEntry) (int64, error) {
	var id int64
	err := q.db.QueryRow(ctx, `
		INSERT INTO github_outbox (installation_id, owner, repo, kind, ordering_key, payload)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		e.InstallationID, noNUL(e.Owner), noNUL(e.Repo), e.Kind, noNUL(e.OrderingKey), e.Payload).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add %s to the GitHub outbox: %w", e.Kind, err)
	}
	if _, err := q.db.Exec(ctx, `SELECT pg_notify($1, $2)`, OutboxChannel, fmt.Sprint(e.InstallationID)); err != nil {
		return 0, fmt.Errorf("notify the GitHub outbox: %w", err)
	}
	return id, nil
}

// LastOutboxEntry returns the newest entry of an ordering key: one the
// calling transaction added (not numbered yet), else the last numbered.
func (q *Queries) LastOutboxEntry(ctx context.Context, orderingKey string) (OutboxEntry, error) {
	e, err := scanOutboxEntry(q.db.QueryRow(ctx, `SELECT `+outboxColumns+` FROM github_outbox
		WHERE ordering_key = $1 ORDER BY seq DESC NULLS FIRST, id DESC LIMIT 1`, noNUL(orderingKey)))
	if err != nil {
		return OutboxEntry{}, notFound(err, "last outbox entry of "+orderingKey)
	}
	return e, nil
}

// pendingHeads defines heads: the first pending entry of each ordering key.
// It walks the distinct keys through the pending index (a skip scan), so it
// costs a few index probes per key however many entries wait behind them.
const pendingHeads = `
	WITH RECURSIVE keys(k) AS (
		(SELECT ordering_key FROM github_outbox WHERE state = 'pending' ORDER BY ordering_key LIMIT 1)
		UNION ALL
		SELECT (SELECT o.ordering_key FROM github_outbox o
		        WHERE o.state = 'pending' AND o.ordering_key > keys.k ORDER BY o.ordering_key LIMIT 1)
		FROM keys WHERE keys.k IS NOT NULL
	), heads AS (
		SELECT h.* FROM keys CROSS JOIN LATERAL (
			SELECT * FROM github_outbox o WHERE o.state = 'pending' AND o.ordering_key = keys.k
			ORDER BY o.seq LIMIT 1) h
		WHERE keys.k IS NOT NULL
	)`

// dueHeads filters heads to those due, of installations not paused.
const dueHeads = `
	FROM heads WHERE next_attempt_at <= now()
	  AND NOT EXISTS (SELECT 1 FROM github_outbox_pauses z
	                  WHERE z.installation_id = heads.installation_id AND z.until > now())`

// OutboxDueInstallations lists the installations with an entry ready to send.
func (q *Queries) OutboxDueInstallations(ctx context.Context) ([]int64, error) {
	rows, err := q.db.Query(ctx, pendingHeads+` SELECT DISTINCT installation_id `+dueHeads)
	if err != nil {
		return nil, fmt.Errorf("find due outbox entries: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("find due outbox entries: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// NextOutboxEntry returns installation inst's oldest entry ready to send, or
// ErrNotFound.
func (q *Queries) NextOutboxEntry(ctx context.Context, inst int64) (OutboxEntry, error) {
	e, err := scanOutboxEntry(q.db.QueryRow(ctx, pendingHeads+` SELECT `+outboxColumns+dueHeads+`
		AND installation_id = $1 ORDER BY seq LIMIT 1`, inst))
	if err != nil {
		return OutboxEntry{}, notFound(err, fmt.Sprintf("next outbox entry of installation %d", inst))
	}
	return e, nil
}

// NextOutboxWake returns when the earliest waiting entry or pause comes due;
// ok is false when nothing is pending.
func (q *Queries) NextOutboxWake(ctx context.Context) (at time.Time, ok bool, err error) {
	var t *time.Time
	err = q.db.QueryRow(ctx, pendingHeads+`
		SELECT min(greatest(heads.next_attempt_at, COALESCE(z.until, heads.next_attempt_at)))
		FROM heads LEFT JOIN github_outbox_pauses z ON z.installation_id = heads.installation_id`).Scan(&t)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find next outbox wake: %w", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}

// NextPendingInKey returns the pending entry of the key that follows entry
// afterID, or ErrNotFound.
func (q *Queries) NextPendingInKey(ctx context.Context, orderingKey string, afterID int64) (OutboxEntry, error) {
	e, err := scanOutboxEntry(q.db.QueryRow(ctx, `SELECT `+outboxColumns+` FROM github_outbox
		WHERE ordering_key = $1 AND state = 'pending' AND seq > (SELECT seq FROM github_outbox WHERE id = $2)
		ORDER BY seq LIMIT 1`, orderingKey, afterID))
	if err != nil {
		return OutboxEntry{}, notFound(err, "next entry of "+orderingKey)
	}
	return e, nil
}

// StartOutboxAttempt counts a send of entry id before it is made, so that
// after a crash the next sender knows GitHub may have acted on it. It
// returns the attempts made before this one.
func (q *Queries) StartOutboxAttempt(ctx context.Context, id int64) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, `UPDATE github_outbox SET attempts = attempts + 1 WHERE id = $1 AND state = 'pending'
		RETURNING attempts - 1`, id).Scan(&n)
	if err != nil {
		return 0, notFound(err, fmt.Sprintf("start sending outbox entry %d", id))
	}
	return n, nil
}

// FinishOutboxEntry moves entry id out of pending into state (sent, failed,
// squashed or skipped), with why for failures.
func (q *Queries) FinishOutboxEntry(ctx context.Context, id int64, state, why string) error {
	_, err := q.db.Exec(ctx, `UPDATE github_outbox SET state = $2, last_error = $3, finished_at = now()
		WHERE id = $1 AND state = 'pending'`, id, state, noNUL(why))
	if err != nil {
		return fmt.Errorf("mark outbox entry %d %s: %w", id, state, err)
	}
	return nil
}

// RetryOutboxEntryAt leaves entry id pending until at, recording why.
func (q *Queries) RetryOutboxEntryAt(ctx context.Context, id int64, at time.Time, why string) error {
	_, err := q.db.Exec(ctx, `UPDATE github_outbox SET next_attempt_at = $2, last_error = $3
		WHERE id = $1 AND state = 'pending'`, id, at, noNUL(why))
	if err != nil {
		return fmt.Errorf("reschedule outbox entry %d: %w", id, err)
	}
	return nil
}

// PauseOutboxInstallation holds every entry of installation inst until
// until (a later pause already recorded is kept).
func (q *Queries) PauseOutboxInstallation(ctx context.Context, inst int64, until time.Time, reason string) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO github_outbox_pauses (installation_id, until, reason) VALUES ($1, $2, $3)
		ON CONFLICT (installation_id) DO UPDATE SET
			until = greatest(github_outbox_pauses.until, EXCLUDED.until), reason = EXCLUDED.reason`,
		inst, until, noNUL(reason))
	if err != nil {
		return fmt.Errorf("pause GitHub outbox of installation %d: %w", inst, err)
	}
	return nil
}

// OutboxPausedUntil returns the end of installation inst's pause; ok is
// false when it is not paused.
func (q *Queries) OutboxPausedUntil(ctx context.Context, inst int64) (until time.Time, ok bool, err error) {
	err = q.db.QueryRow(ctx, `SELECT until FROM github_outbox_pauses WHERE installation_id = $1 AND until > now()`,
		inst).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read pause of installation %d: %w", inst, err)
	}
	return until, true, nil
}

// OutboxCount is how many entries of one kind are in one state.
type OutboxCount struct {
	Kind, State string
	Count       int64
	// Oldest is the creation time of the oldest such entry.
	Oldest time.Time
}

// OutboxPendingCounts counts pending entries by kind, for /metrics.
func (q *Queries) OutboxPendingCounts(ctx context.Context) ([]OutboxCount, error) {
	rows, err := q.db.Query(ctx, `SELECT kind, count(*), min(created_at) FROM github_outbox
		WHERE state = 'pending' GROUP BY kind`)
	if err != nil {
		return nil, fmt.Errorf("count outbox entries: %w", err)
	}
	defer rows.Close()
	var out []OutboxCount
	for rows.Next() {
		c := OutboxCount{State: OutboxPending}
		if err := rows.Scan(&c.Kind, &c.Count, &c.Oldest); err != nil {
			return nil, fmt.Errorf("count outbox entries: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// PruneOutbox deletes finished entries older than before and returns how
// many went.
func (q *Queries) PruneOutbox(ctx context.Context, before time.Time) (int64, error) {
	tag, err := q.db.Exec(ctx, `DELETE FROM github_outbox WHERE state <> 'pending' AND finished_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("prune the GitHub outbox: %w", err)
	}
	if _, err := q.db.Exec(ctx, `DELETE FROM github_outbox_pauses WHERE until < $1`, before); err != nil {
		return 0, fmt.Errorf("prune GitHub outbox pauses: %w", err)
	}
	return tag.RowsAffected(), nil
}
