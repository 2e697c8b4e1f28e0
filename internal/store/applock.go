package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// appLockClass is the first key of the two-key advisory lock that stands for
// "a job of this app is running". The two-key space never collides with the
// one-key locks River takes.
const appLockClass = 0x4b53 // "KS"

// LockCheckInterval is how often a held lock's connection is asked whether it
// still holds the lock. A session lock dies with its connection (killed by an
// operator, a proxy or a restart of PostgreSQL) without telling its holder:
// this is how long a holder may not know.
const LockCheckInterval = time.Second

// ErrLockLost is the cause of a lock's context when its connection lost it.
var ErrLockLost = errors.New("the lock's database connection was lost")

// TryLockApp takes the app's lock if it is free, on a connection of its own,
// so the lock dies with the process or the connection: a crashed Keystone
// never leaves an app locked. It is a session lock, not a transaction's: an
// idle_in_transaction_session_timeout cannot end it in the middle of a job.
//
// held is a context derived from ctx that ends, with cause ErrLockLost, when
// the lock's connection is found lost (checked every LockCheckInterval): the
// holder must stop the work the lock guards, since another job of the app may
// now start. ok is false at once when another job (in this or any other
// process) holds the lock. release must be called exactly once when ok is
// true; it ends held.
func (s *Store) TryLockApp(ctx context.Context, appID int64) (held context.Context, release func(), ok bool, err error) {
	if appID <= 0 || appID > 1<<31-1 {
		return nil, nil, false, fmt.Errorf("lock app %d: id out of the lock's range", appID)
	}
	conn, ok, err := s.trySessionLock(ctx, appLockClass, int32(appID))
	if err != nil {
		return nil, nil, false, fmt.Errorf("lock app %d: %w", appID, err)
	}
	if !ok {
		return nil, nil, false, nil
	}
	held, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchLock(held, conn, appLockClass, int32(appID), stop, func() { cancel(fmt.Errorf("lock app %d: %w", appID, ErrLockLost)) })
	}()
	var once sync.Once
	return held, func() {
		once.Do(func() {
			close(stop)
			<-watched
			cancel(context.Canceled)
			unlockSession(ctx, conn, appLockClass, int32(appID))
		})
	}, true, nil
}

// trySessionLock takes the two-key advisory lock (class, key) on a pooled
// connection kept for it; the connection is released when ok is false.
func (s *Store) trySessionLock(ctx context.Context, class, key int32) (conn *pgxpool.Conn, ok bool, err error) {
	conn, err = s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, class, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, err
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return conn, true, nil
}

// lockHeld asks conn's own session whether it still holds (class, key).
func lockHeld(ctx context.Context, conn *pgxpool.Conn, class, key int32) (bool, error) {
	var held bool
	err := conn.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid::bigint = $1
			  AND objid::bigint = ($2::bigint & 4294967295) AND objsubid = 2 AND granted)`,
		int64(class), int64(key)).Scan(&held)
	return held, err
}

// watchLock checks every LockCheckInterval that conn still holds (class,
// key), until stop closes or ctx ends; the first time it does not, it calls
// lost and returns.
func watchLock(ctx context.Context, conn *pgxpool.Conn, class, key int32, stop <-chan struct{}, lost func()) {
	t := time.NewTicker(LockCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		checkCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		held, err := lockHeld(checkCtx, conn, class, key)
		cancel()
		if err != nil || !held {
			lost()
			return
		}
	}
}

// unlockSession drops (class, key) and gives conn back to the pool; a
// connection that cannot unlock (it may be dead) is closed, which drops the
// lock too.
func unlockSession(ctx context.Context, conn *pgxpool.Conn, class, key int32) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var unlocked bool
	if err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1, $2)`, class, key).Scan(&unlocked); err != nil || !unlocked {
		_ = conn.Conn().Close(ctx) // the pool replaces a closed connection
	}
	conn.Release()
}

// AppLocked reports whether some session holds the app's lock, that is whether
// a job of the app is running somewhere. Reconciliation uses it to tell a
// running job from one whose process died.
func (q *Queries) AppLocked(ctx context.Context, appID int64) (bool, error) {
	var held bool
	err := q.db.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2 AND granted)`,
		int64(appLockClass), appID).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("check lock of app %d: %w", appID, err)
	}
	return held, nil
}
