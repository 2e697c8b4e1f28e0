package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CommentThread is one Keystone comment on an issue or pull request, posted
// once and edited after.
type CommentThread struct {
	ID             int64
	InstallationID int64
	Owner, Repo    string
	IssueNumber    int
	Key            string
	CommentID      int64 // 0 until posted
	CreateAttempts int   // posts started
}

// CommentThread returns the thread (owner/repo, issue, key), creating it
// when new.
func (q *Queries) CommentThread(ctx context.Context, inst int64, owner, repo string, issue int, key string) (CommentThread, error) {
	t := CommentThread{InstallationID: inst, Owner: owner, Repo: repo, IssueNumber: issue, Key: key}
	// The no-op update makes RETURNING give the row whether it is new or not.
	err := q.db.QueryRow(ctx, `
		INSERT INTO github_comment_threads (installation_id, owner, repo, issue_number, key)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (lower(owner), lower(repo), issue_number, key) DO UPDATE SET key = EXCLUDED.key
		RETURNING id, COALESCE(comment_id, 0), create_attempts`,
		inst, noNUL(owner), noNUL(repo), issue, noNUL(key)).Scan(&t.ID, &t.CommentID, &t.CreateAttempts)
	if err != nil {
		return CommentThread{}, fmt.Errorf("comment thread %s on %s/%s#%d: %w", key, owner, repo, issue, err)
	}
	return t, nil
}

// StartThreadPost counts a post of thread id's comment before it is made.
func (q *Queries) StartThreadPost(ctx context.Context, id int64) error {
	if _, err := q.db.Exec(ctx, `UPDATE github_comment_threads SET create_attempts = create_attempts + 1,
		updated_at = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("start posting comment of thread %d: %w", id, err)
	}
	return nil
}

// SetThreadComment records GitHub's id of thread id's comment; 0 forgets it
// (the comment was deleted on GitHub), so the next update posts anew.
func (q *Queries) SetThreadComment(ctx context.Context, id, commentID int64) error {
	_, err := q.db.Exec(ctx, `UPDATE github_comment_threads SET comment_id = NULLIF($2, 0),
		create_attempts = CASE WHEN $2 = 0 THEN 0 ELSE create_attempts END, updated_at = now() WHERE id = $1`,
		id, commentID)
	if err != nil {
		return fmt.Errorf("record comment %d of thread %d: %w", commentID, id, err)
	}
	return nil
}

// CommitPull returns the pull request recorded for sha (0: none); found is
// false when it was never looked up, or found none over ten minutes ago (a
// pull request may have been opened since).
func (q *Queries) CommitPull(ctx context.Context, owner, repo, sha string) (number int, found bool, err error) {
	err = q.db.QueryRow(ctx, `SELECT pull_number FROM github_commit_pulls
		WHERE owner = $1 AND repo = $2 AND sha = $3
		  AND (pull_number > 0 OR looked_up_at > now() - interval '10 minutes')`, owner, repo, sha).Scan(&number)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("pull request of %s/%s@%s: %w", owner, repo, sha, err)
	}
	return number, true, nil
}

// SetCommitPull records the pull request sha came from (0: none).
func (q *Queries) SetCommitPull(ctx context.Context, owner, repo, sha string, number int) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO github_commit_pulls (owner, repo, sha, pull_number) VALUES ($1, $2, $3, $4)
		ON CONFLICT (owner, repo, sha) DO UPDATE SET pull_number = EXCLUDED.pull_number, looked_up_at = now()`,
		noNUL(owner), noNUL(repo), noNUL(sha), number)
	if err != nil {
		return fmt.Errorf("record pull request of %s/%s@%s: %w", owner, repo, sha, err)
	}
	return nil
}
