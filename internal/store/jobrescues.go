package store

import (
	"context"
	"fmt"
	"time"
)

// ClaimJobRescue records that job, left running by the dead process owner,
// is being rescued, and reports false when another rescuer has claimed it
// already. Call it in the transaction that cancels the job and inserts its
// replacement, so that exactly one replacement is ever made.
func (q *Queries) ClaimJobRescue(ctx context.Context, job int64, owner string) (bool, error) {
	tag, err := q.db.Exec(ctx, `INSERT INTO job_rescues (job_id, owner) VALUES ($1, $2)
		ON CONFLICT (job_id) DO NOTHING`, job, owner)
	if err != nil {
		return false, fmt.Errorf("claim the rescue of job %d: %w", job, err)
	}
	return tag.RowsAffected() == 1, nil
}

// SetJobReplacement records the job that took rescued job's place.
func (q *Queries) SetJobReplacement(ctx context.Context, job, replacement int64) error {
	if _, err := q.db.Exec(ctx, `UPDATE job_rescues SET replacement_id = $2 WHERE job_id = $1`, job, replacement); err != nil {
		return fmt.Errorf("record the replacement of job %d: %w", job, err)
	}
	return nil
}

// RescuedJobs returns which of ids are rescued jobs: still running in River's
// eyes until River finalizes them, but no longer live.
func (q *Queries) RescuedJobs(ctx context.Context, ids []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.db.Query(ctx, `SELECT job_id FROM job_rescues WHERE job_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read rescued jobs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read rescued jobs: %w", err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rescued jobs: %w", err)
	}
	return out, nil
}

// PruneJobRescues forgets the rescues, recorded over olderThan ago, of jobs
// that are not in running (the ids of every job River listed as running in
// this pass): River has finalized them, so nothing asks about them again. A
// rescue is kept for as long as its job runs, or it would be rescued twice.
func (q *Queries) PruneJobRescues(ctx context.Context, running []int64, olderThan time.Duration) (int64, error) {
	tag, err := q.db.Exec(ctx, `DELETE FROM job_rescues
		WHERE NOT (job_id = ANY($1)) AND rescued_at < now() - $2 * interval '1 second'`,
		running, olderThan.Seconds())
	if err != nil {
		return 0, fmt.Errorf("forget finalized job rescues: %w", err)
	}
	return tag.RowsAffected(), nil
}
