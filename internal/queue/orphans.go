package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/keystone-app/keystone/internal/store"
)

// OrphanStore is what the orphan rescuer needs from the store.
type OrphanStore interface {
	HoldProcessLock(ctx context.Context, id string, report func(regained bool, err error)) (release func(), err error)
	RescueOrphanedJobs(ctx context.Context, grace time.Duration, self string) ([]store.RescuedJob, error)
}

// Orphan rescue timing. River's own rescuer waits RescueStuckJobsAfter (over
// half an hour) because it cannot tell a slow job from a dead one; a process
// lock can, so a job whose process died is retried within a minute.
const (
	OrphanCheckInterval = 30 * time.Second
	// orphanGrace leaves a just-fetched job alone while its process starts it.
	orphanGrace = 5 * time.Second
)

// NewProcessID returns a job-client id unique to this process, to hold a
// process lock under and to pass as Config.ID.
func NewProcessID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	if len(host) > 40 {
		host = host[:40]
	}
	return fmt.Sprintf("keystone_%s_%d_%s", host, os.Getpid(), hex.EncodeToString(b))
}

// OrphanRescuer marks this process alive and retries the jobs of processes
// that died while running them.
type OrphanRescuer struct {
	Store     OrphanStore
	ProcessID string
	Logger    *slog.Logger
	Interval  time.Duration // OrphanCheckInterval when zero
}

// HoldLiveness takes this process's lock; call it before the job client starts
// and release when it has stopped. A lock lost with its connection is taken
// again at once (logged): until then other processes may rescue this one's
// running jobs, so the loss is a warning.
func (r *OrphanRescuer) HoldLiveness(ctx context.Context) (release func(), err error) {
	return r.Store.HoldProcessLock(ctx, r.ProcessID, func(regained bool, err error) {
		if regained {
			r.Logger.Info("process liveness lock taken again", slog.String("process_id", r.ProcessID))
			return
		}
		r.Logger.Warn("process liveness lock lost", slog.String("process_id", r.ProcessID), slog.String("error", err.Error()))
	})
}

// Run rescues orphans now and then every Interval until ctx ends.
func (r *OrphanRescuer) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = OrphanCheckInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.RescueOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RescueOnce runs one pass and logs what it rescued.
func (r *OrphanRescuer) RescueOnce(ctx context.Context) {
	jobs, err := r.Store.RescueOrphanedJobs(ctx, orphanGrace, r.ProcessID)
	if err != nil && ctx.Err() == nil {
		r.Logger.Warn("rescue orphaned jobs", slog.String("error", err.Error()))
	}
	for _, j := range jobs {
		r.Logger.Info("job of a dead process rescued", slog.Int64("job_id", j.ID),
			slog.String("kind", j.Kind), slog.Bool("discarded", j.Discarded))
	}
}
