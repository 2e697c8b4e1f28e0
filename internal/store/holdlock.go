package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Classes (first keys) of the session locks taken with TryHoldLock. Like the
// app lock they live in the two-key space, apart from River's locks.
const (
	OutboxLockClass     int32 = 0x4b4f // "KO": sending one installation's outbox
	RedeliveryLockClass int32 = 0x4b52 // "KR": a pass over missed webhook deliveries
)

// TryHoldLock takes the advisory lock (class, key) on a connection of its own
// if no session holds it, and keeps it until release is called or the
// connection dies with the process, so a crashed holder never keeps it.
// ok is false at once when another session holds it. Keys over 32 bits are
// folded: two keys sharing a lock only wait for each other.
func (s *Store) TryHoldLock(ctx context.Context, class int32, key int64) (release func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("take lock %x/%d: %w", class, key, err)
	}
	k := int32(key ^ key>>32)
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, class, k).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("take lock %x/%d: %w", class, key, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, class, k); err != nil {
				_ = conn.Conn().Close(ctx) // closing the session drops the lock too
			}
			conn.Release()
		})
	}, true, nil
}

// Listen calls notify with the payload of every notification on channel
// until ctx ends (nil) or the connection fails (the error), on a connection
// of its own. Notifications sent while no one listens are lost: listeners
// also poll.
func (s *Store) Listen(ctx context.Context, channel string, notify func(payload string)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listen on %s: %w", channel, err)
		}
		notify(n.Payload)
	}
}
