package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PushKey names one push: a replay of its signed body under another
// delivery id has the same key.
type PushKey struct {
	Repository    string // owner/repo
	Ref           string
	Before, After string
	PushedAt      int64 // the payload's repository.pushed_at; 0 when absent
}

// ClaimPush records that delivery deliveryID carries push k, unless another
// delivery did first: then it returns that delivery's id, and the caller
// holds a replay.
func (q *Queries) ClaimPush(ctx context.Context, k PushKey, deliveryID int64) (heldBy int64, err error) {
	for attempt := 0; ; attempt++ {
		heldBy, err = q.claimPush(ctx, k, deliveryID)
		// No row: a claim committed while this statement ran, after its
		// snapshot; the next statement sees it.
		if !errors.Is(err, pgx.ErrNoRows) || attempt == 2 {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("claim push %s %s of delivery %d: %w", k.Ref, k.After, deliveryID, err)
	}
	return heldBy, nil
}

func (q *Queries) claimPush(ctx context.Context, k PushKey, deliveryID int64) (heldBy int64, err error) {
	err = q.db.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO push_claims (repository, ref, before_sha, after_sha, pushed_at, delivery_id)
			VALUES (lower($1), $2, $3, $4, $5, $6)
			ON CONFLICT DO NOTHING
			RETURNING delivery_id)
		SELECT delivery_id FROM ins
		UNION ALL
		SELECT delivery_id FROM push_claims
		WHERE repository = lower($1) AND ref = $2 AND before_sha = $3 AND after_sha = $4 AND pushed_at = $5
		LIMIT 1`,
		noNUL(k.Repository), noNUL(k.Ref), noNUL(k.Before), noNUL(k.After), k.PushedAt, deliveryID).Scan(&heldBy)
	return heldBy, err
}

// CommandOfComment returns the command first read from comment commentID,
// ErrNotFound when there is none.
func (q *Queries) CommandOfComment(ctx context.Context, commentID int64) (Command, error) {
	c, err := scanCommand(q.db.QueryRow(ctx, `SELECT `+commandColumns+` FROM github_commands
		WHERE comment_id = $1 AND first_of_comment`, commentID))
	if err != nil {
		return Command{}, notFound(err, fmt.Sprintf("command of comment %d", commentID))
	}
	return c, nil
}

// ErrReplayed is returned for a delivery that repeats one handled already
// under another delivery id.
var ErrReplayed = errors.New("replay of an earlier delivery")
