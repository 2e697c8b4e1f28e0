package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// LogLimit caps one deployment's stored log.
type LogLimit struct {
	Lines int
	Bytes int64
}

// TruncationMarker is the line stored once where a deployment's log was cut.
const TruncationMarker = "[keystone] log truncated here: the log is capped; later lines were dropped"

// AppendDeploymentLog appends lines to the deployment's log in order, within
// limit, in a transaction of its own: see AppendLogLines. It returns how many
// lines were stored.
func (s *Store) AppendDeploymentLog(ctx context.Context, deploymentID int64, lines []string, limit LogLimit) (int, error) {
	if len(lines) == 0 {
		return 0, nil
	}
	stored := 0
	err := s.InTx(ctx, func(_ pgx.Tx, q *Queries) error {
		var err error
		stored, err = q.AppendLogLines(ctx, deploymentID, lines, limit)
		return err
	})
	return stored, err
}

// AppendLogLines appends lines to the deployment's log in order, within
// limit: the first line that does not fit is replaced by TruncationMarker
// (once per deployment) and the rest are dropped. Lines are stored as given:
// callers split and redact them. Run it in a transaction: the deployment's
// row lock orders concurrent writers.
func (q *Queries) AppendLogLines(ctx context.Context, deploymentID int64, lines []string, limit LogLimit) (int, error) {
	var count int
	var size int64
	var truncated bool
	if err := q.db.QueryRow(ctx, `SELECT log_lines, log_bytes, log_truncated FROM deployments
		WHERE id = $1 FOR UPDATE`, deploymentID).Scan(&count, &size, &truncated); err != nil {
		return 0, notFound(err, fmt.Sprintf("append to the log of deployment %d", deploymentID))
	}
	var keep []string
	var added int64
	for _, l := range lines {
		l = strings.ToValidUTF8(noNUL(l), "\uFFFD")
		if count+len(keep)+1 > limit.Lines || size+added+int64(len(l)) > limit.Bytes {
			if !truncated {
				keep = append(keep, TruncationMarker)
				added += int64(len(TruncationMarker))
				truncated = true
			}
			break
		}
		keep = append(keep, l)
		added += int64(len(l))
	}
	if len(keep) == 0 {
		return 0, nil
	}
	if _, err := q.db.Exec(ctx, `
		INSERT INTO deployment_log_lines (deployment_id, seq, at, line)
		SELECT $1, $2 + n, $4, line FROM unnest($3::text[]) WITH ORDINALITY AS t(line, n)`,
		deploymentID, count, keep, time.Now()); err != nil {
		return 0, fmt.Errorf("append to the log of deployment %d: %w", deploymentID, err)
	}
	if _, err := q.db.Exec(ctx, `UPDATE deployments SET log_lines = log_lines + $2, log_bytes = log_bytes + $3,
		log_truncated = $4 WHERE id = $1`, deploymentID, len(keep), added, truncated); err != nil {
		return 0, fmt.Errorf("append to the log of deployment %d: %w", deploymentID, err)
	}
	return len(keep), nil
}

// StartStep records that the deployment began step name and returns its position.
func (q *Queries) StartStep(ctx context.Context, deploymentID int64, name string) (int, error) {
	var pos int
	err := q.db.QueryRow(ctx, `
		INSERT INTO deployment_steps (deployment_id, position, name)
		SELECT $1, COALESCE(max(position), 0) + 1, $2 FROM deployment_steps WHERE deployment_id = $1
		RETURNING position`, deploymentID, name).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("start step %s of deployment %d: %w", name, deploymentID, err)
	}
	return pos, nil
}

// FinishStep records the end of a step, with the error that ended it ("" if none).
func (q *Queries) FinishStep(ctx context.Context, deploymentID int64, position int, errText string) error {
	_, err := q.db.Exec(ctx, `UPDATE deployment_steps SET finished_at = now(), error = $3
		WHERE deployment_id = $1 AND position = $2 AND finished_at IS NULL`, deploymentID, position, noNUL(errText))
	if err != nil {
		return fmt.Errorf("finish step %d of deployment %d: %w", position, deploymentID, err)
	}
	return nil
}

// FinishOpenSteps ends every step still open, e.g. after a crash, with errText.
func (q *Queries) FinishOpenSteps(ctx context.Context, deploymentID int64, errText string) error {
	_, err := q.db.Exec(ctx, `UPDATE deployment_steps SET finished_at = now(), error = $2
		WHERE deployment_id = $1 AND finished_at IS NULL`, deploymentID, noNUL(errText))
	if err != nil {
		return fmt.Errorf("close steps of deployment %d: %w", deploymentID, err)
	}
	return nil
}
