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

// ProcessAlive reports whether some session holds owner's process lock:
// whether the Keystone process whose job client id is owner is alive.
func (s *Store) ProcessAlive(ctx context.Context, owner string) (bool, error) {
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
