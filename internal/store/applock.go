package store

import (
	"context"
	"fmt"
	"time"
)

// appLockClass is the first key of the two-key advisory lock that stands for
// "a job of this app is running". The two-key space never collides with the
// one-key locks River takes.
const appLockClass = 0x4b53 // "KS"

// TryLockApp takes the app's lock if it is free, on a connection of its own
// inside a transaction, so the lock dies with the process or the connection:
// a crashed Keystone never leaves an app locked. It returns ok=false at once
// when another job (in this or any other process) holds it. release must be
// called exactly once when ok is true.
func (s *Store) TryLockApp(ctx context.Context, appID int64) (release func(), ok bool, err error) {
	if appID <= 0 || appID > 1<<31-1 {
		return nil, false, fmt.Errorf("lock app %d: id out of the lock's range", appID)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock app %d: %w", appID, err)
	}
	rollback := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(ctx) // ends the transaction and with it the lock
	}
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, appLockClass, int32(appID)).Scan(&ok); err != nil {
		rollback()
		return nil, false, fmt.Errorf("lock app %d: %w", appID, err)
	}
	if !ok {
		rollback()
		return nil, false, nil
	}
	return rollback, true, nil
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
