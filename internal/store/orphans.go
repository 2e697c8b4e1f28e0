package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// processLockClass is the first key of the advisory lock a Keystone process
// holds for as long as it lives, keyed by its job client's id.
const processLockClass = 0x4b50 // "KP"

// HoldProcessLock takes, on a connection of its own, the lock that says
// "process id is alive", and holds it until release is called (once or more)
// or the connection dies with the process. Other processes' rescuers use it to
// tell a job that is slow from one whose process is gone.
func (s *Store) HoldProcessLock(ctx context.Context, id string) (release func(), err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("hold process lock %s: %w", id, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, processLockClass, id).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("hold process lock %s: %w", id, err)
	}
	if !ok {
		conn.Release()
		return nil, fmt.Errorf("hold process lock %s: another process holds it", id)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, processLockClass, id)
			if err != nil {
				// Closing the session drops the lock too; the pool replaces it.
				_ = conn.Conn().Close(ctx)
			}
			conn.Release()
		})
	}, nil
}

// RescuedJob is a job moved out of running because its process died.
type RescuedJob struct {
	ID        int64
	Kind      string
	Discarded bool // its attempts were used up
}

// RescueOrphanedJobs finds jobs marked running for longer than grace whose
// process no longer holds its process lock, and makes them available again
// at once (or discards them when their attempts are used up), as River's own
// rescuer would after RescueStuckJobsAfter.
func (s *Store) RescueOrphanedJobs(ctx context.Context, grace time.Duration) ([]RescuedJob, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT DISTINCT attempted_by[array_upper(attempted_by, 1)]
		FROM river_job
		WHERE state = 'running' AND attempted_at < now() - $1::interval
		  AND cardinality(attempted_by) > 0`, grace)
	if err != nil {
		return nil, fmt.Errorf("find running jobs: %w", err)
	}
	var owners []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find running jobs: %w", err)
		}
		owners = append(owners, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find running jobs: %w", err)
	}

	var rescued []RescuedJob
	for _, owner := range owners {
		alive, err := s.processAlive(ctx, owner)
		if err != nil {
			return rescued, err
		}
		if alive {
			continue
		}
		jobs, err := s.rescueJobsOf(ctx, owner, grace)
		if err != nil {
			return rescued, err
		}
		rescued = append(rescued, jobs...)
	}
	return rescued, nil
}

// processAlive reports whether some session holds owner's process lock.
func (s *Store) processAlive(ctx context.Context, owner string) (bool, error) {
	var alive bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND classid::bigint = $1
			  AND objid::bigint = (hashtext($2)::bigint & 4294967295) AND objsubid = 2 AND granted)`,
		int64(processLockClass), owner).Scan(&alive)
	if err != nil {
		return false, fmt.Errorf("check process %s: %w", owner, err)
	}
	return alive, nil
}

func (s *Store) rescueJobsOf(ctx context.Context, owner string, grace time.Duration) ([]RescuedJob, error) {
	rows, err := s.pool.Query(ctx, `
		UPDATE river_job SET
			state = CASE WHEN attempt >= max_attempts THEN 'discarded'::river_job_state ELSE 'available'::river_job_state END,
			finalized_at = CASE WHEN attempt >= max_attempts THEN now() END,
			scheduled_at = now(),
			errors = array_append(errors, jsonb_build_object(
				'at', now(), 'attempt', attempt, 'trace', '',
				'error', 'the Keystone process running this job died; rescued by Keystone')),
			metadata = metadata || jsonb_build_object('keystone:rescued', true)
		WHERE state = 'running' AND attempted_at < now() - $2::interval
		  AND attempted_by[array_upper(attempted_by, 1)] = $1
		RETURNING id, kind, state = 'discarded'`, owner, grace)
	if err != nil {
		return nil, fmt.Errorf("rescue jobs of process %s: %w", owner, err)
	}
	defer rows.Close()
	var out []RescuedJob
	for rows.Next() {
		var j RescuedJob
		if err := rows.Scan(&j.ID, &j.Kind, &j.Discarded); err != nil {
			return nil, fmt.Errorf("rescue jobs of process %s: %w", owner, err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}
