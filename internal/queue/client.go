package queue

import (
	"cmp"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// Config sets up the job queue. Zero values take the defaults below.
type Config struct {
	// DeployWorkers is how many deploy jobs run at once (KEYSTONE_WORKERS).
	DeployWorkers int
	// IntakeWorkers is how many push and comment jobs run at once. Default 4.
	IntakeWorkers int
	// Logger receives River's own logs.
	Logger *slog.Logger
	// FetchPollInterval is how often idle workers look for jobs when no
	// notification arrived. Default River's (1s); tests shorten it.
	FetchPollInterval time.Duration
	// RescueStuckJobsAfter overrides RescueStuckJobsAfter (tests only).
	RescueStuckJobsAfter time.Duration
	// ID names this process's client in River's records; default River's.
	ID string
}

func (c Config) validate() error {
	switch {
	case c.DeployWorkers < 1:
		return fmt.Errorf("queue config: DeployWorkers must be at least 1, got %d", c.DeployWorkers)
	case c.IntakeWorkers < 0:
		return fmt.Errorf("queue config: IntakeWorkers must not be negative, got %d", c.IntakeWorkers)
	}
	return nil
}

// NewClient returns a River client over pool working the given workers. With
// workers nil it can only insert jobs (benchmarks, CLI commands).
func NewClient(pool *pgxpool.Pool, workers *river.Workers, cfg Config) (*river.Client[pgx.Tx], error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rc := &river.Config{
		ID:                   cfg.ID,
		Logger:               cfg.Logger,
		MaxAttempts:          deployAttempts,
		JobTimeout:           CommentTimeout, // kinds set their own through Worker.Timeout
		RescueStuckJobsAfter: RescueStuckJobsAfter,
		FetchPollInterval:    cfg.FetchPollInterval,
	}
	if cfg.FetchPollInterval > 0 && cfg.FetchPollInterval < river.FetchCooldownDefault {
		rc.FetchCooldown = cfg.FetchPollInterval // River refuses a cooldown above the interval
	}
	if cfg.RescueStuckJobsAfter > 0 {
		rc.RescueStuckJobsAfter = cfg.RescueStuckJobsAfter
	}
	if workers != nil {
		rc.Workers = workers
		rc.Queues = map[string]river.QueueConfig{
			QueueIntake: {MaxWorkers: cmp.Or(cfg.IntakeWorkers, 4)},
			QueueDeploy: {MaxWorkers: cfg.DeployWorkers},
		}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), rc)
	if err != nil {
		return nil, fmt.Errorf("create job queue client: %w", err)
	}
	return client, nil
}
