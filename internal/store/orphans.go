package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// processLockClass is the first key of the advisory lock a Keystone process
// holds for as long as it lives, keyed by its job client's id.
const processLockClass = 0x4b50 // "KP"

// HoldProcessLock takes, on a connection of its own, the lock that says
// "process id is alive", and holds it until release is called (once or more)
// or the process dies. Other processes' rescuers use it to tell a job that is
// slow from one whose process is gone.
//
// The lock is checked every LockCheckInterval: when its connection is lost
// (killed, PostgreSQL restarted) the process is still alive, so the lock is
// taken again on a new connection, retrying until it is or release is
// called. report (may be nil) hears of each loss (regained false, with the
// cause) and each recovery (regained true).
func (s *Store) HoldProcessLock(ctx context.Context, id string, report func(regained bool, err error)) (release func(), err error) {
	if report == nil {
		report = func(bool, error) {}
	}
	var key int32
	if err := s.pool.QueryRow(ctx, `SELECT hashtext($1)`, id).Scan(&key); err != nil {
		return nil, fmt.Errorf("hold process lock %s: %w", id, err)
	}
	conn, ok, err := s.trySessionLock(ctx, processLockClass, key)
	if err != nil {
		return nil, fmt.Errorf("hold process lock %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("hold process lock %s: another process holds it", id)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	var mu sync.Mutex // guards conn
	go func() {
		defer close(done)
		bg := context.WithoutCancel(ctx)
		for {
			mu.Lock()
			c := conn
			mu.Unlock()
			lost := false
			watchLock(bg, c, processLockClass, key, stop, func() { lost = true })
			if !lost {
				return // released
			}
			report(false, fmt.Errorf("process lock %s: %w", id, ErrLockLost))
			unlockSession(bg, c, processLockClass, key) // closes the dead connection
			mu.Lock()
			conn = nil
			mu.Unlock()
			c = s.retakeProcessLock(bg, id, key, stop, report)
			if c == nil {
				return // released while retrying
			}
			mu.Lock()
			conn = c
			mu.Unlock()
			report(true, nil)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			mu.Lock()
			defer mu.Unlock()
			if conn != nil {
				unlockSession(ctx, conn, processLockClass, key)
			}
		})
	}, nil
}

// retakeProcessLock takes the process lock again every LockCheckInterval
// until it has it (its connection) or stop closes (nil).
func (s *Store) retakeProcessLock(ctx context.Context, id string, key int32, stop <-chan struct{}, report func(bool, error)) *pgxpool.Conn {
	t := time.NewTicker(LockCheckInterval)
	defer t.Stop()
	for {
		tryCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, ok, err := s.trySessionLock(tryCtx, processLockClass, key)
		cancel()
		if err == nil && ok {
			return conn
		}
		if err == nil {
			err = errors.New("another session holds it")
		}
		report(false, fmt.Errorf("take process lock %s again: %w", id, err))
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
	}
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
// rescuer would after RescueStuckJobsAfter. The jobs of process self are
// never touched: the caller is alive, whatever its lock says (a lock lost
// with its connection is being taken again).
func (s *Store) RescueOrphanedJobs(ctx context.Context, grace time.Duration, self string) ([]RescuedJob, error) {
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
		if owner == self {
			continue
		}
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
