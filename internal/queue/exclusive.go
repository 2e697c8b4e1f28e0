package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/store"
)

// AppLocker takes an app's lock for the length of a job. It must hold across
// processes sharing the database and be released if the holder dies. held
// ends when the lock is lost: the job must stop.
type AppLocker interface {
	TryLockApp(ctx context.Context, appID int64) (held context.Context, release func(), ok bool, err error)
}

// SnoozeWhenLocked is how long a job waits before trying again when another
// job of its app runs. A snooze does not use up one of the job's attempts.
const SnoozeWhenLocked = 2 * time.Second

// Exclusive wraps worker so that at most one job of an app runs at a time, in
// this process or any other using the same database. A job whose app is busy
// is snoozed for about snooze (0: SnoozeWhenLocked) and tried again; it never
// fails for it.
func Exclusive[T AppJobArgs](locker AppLocker, worker river.Worker[T], snooze time.Duration) river.Worker[T] {
	if snooze <= 0 {
		snooze = SnoozeWhenLocked
	}
	return &exclusive[T]{locker: locker, inner: worker, snooze: snooze}
}

type exclusive[T AppJobArgs] struct {
	locker AppLocker
	inner  river.Worker[T]
	snooze time.Duration
}

func (e *exclusive[T]) Middleware(job *rivertype.JobRow) []rivertype.WorkerMiddleware {
	return e.inner.Middleware(job)
}

func (e *exclusive[T]) NextRetry(job *river.Job[T]) time.Time { return e.inner.NextRetry(job) }

func (e *exclusive[T]) Timeout(job *river.Job[T]) time.Duration { return e.inner.Timeout(job) }

func (e *exclusive[T]) Work(ctx context.Context, job *river.Job[T]) error {
	appID := job.Args.LockAppID()
	held, release, ok, err := e.locker.TryLockApp(ctx, appID)
	if err != nil {
		return fmt.Errorf("%s job %d: %w", job.Kind, job.ID, err)
	}
	if !ok {
		// Jitter spreads the retries of several waiting jobs of one app.
		return river.JobSnooze(e.snooze + rand.N(e.snooze/2+1))
	}
	defer release()
	// The job runs under the lock's context: if the lock's connection is
	// lost, another job of the app may start, so this one is stopped and
	// fails with the cause (River retries it once the lock is free).
	err = e.inner.Work(held, job)
	if cause := context.Cause(held); errors.Is(cause, store.ErrLockLost) {
		return fmt.Errorf("%s job %d stopped: %w", job.Kind, job.ID, cause)
	}
	return err
}
