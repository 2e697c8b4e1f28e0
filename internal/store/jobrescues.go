package store

import (
	"context"
	"fmt"
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
