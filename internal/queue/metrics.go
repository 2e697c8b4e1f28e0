package queue

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// JobLister lists jobs through River's API; *river.Client implements it.
type JobLister interface {
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
}

// RescuedJobs tells which running jobs were rescued from a dead process.
type RescuedJobs interface {
	RescuedJobs(ctx context.Context, ids []int64) (map[int64]bool, error)
}

// liveStates are the states keystone_jobs counts: jobs waiting or running.
// Finished jobs are River's to keep or prune, not a level worth a gauge.
var liveStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// stateRescued is the state keystone_jobs gives a job of a dead process that
// was cancelled and replaced: River shows it running until its own rescuer
// finalizes it, but nothing works it.
const stateRescued = "rescued"

// JobsCollector exports keystone_jobs{kind,state}, listed through River's API
// at scrape time so that every process reports the same truth.
type JobsCollector struct {
	jobs    JobLister
	rescued RescuedJobs
	logger  *slog.Logger
	desc    *prometheus.Desc
}

// NewJobsCollector returns the collector; register it on the metrics registry.
func NewJobsCollector(jobs JobLister, rescued RescuedJobs, logger *slog.Logger) *JobsCollector {
	return &JobsCollector{
		jobs:    jobs,
		rescued: rescued,
		logger:  logger,
		desc: prometheus.NewDesc("keystone_jobs", "Jobs waiting or running, by kind and state (rescued: a dead process's job, replaced).",
			[]string{"kind", "state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *JobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *JobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		c.logger.Warn("metrics: count jobs", slog.String("error", err.Error()))
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.kind, k.state)
	}
}

type kindState struct{ kind, state string }

// count lists the live jobs page by page and counts them by kind and state.
func (c *JobsCollector) count(ctx context.Context) (map[kindState]int, error) {
	const page = 1000
	params := river.NewJobListParams().States(liveStates...).OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(page)
	counts := map[kindState]int{}
	var running []*rivertype.JobRow
	for {
		res, err := c.jobs.JobList(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		for _, j := range res.Jobs {
			if j.State == rivertype.JobStateRunning {
				running = append(running, j)
				continue
			}
			counts[kindState{j.Kind, string(j.State)}]++
		}
		if len(res.Jobs) < page || res.LastCursor == nil {
			break
		}
		params = params.After(res.LastCursor)
	}
	ids := make([]int64, len(running))
	for i, j := range running {
		ids[i] = j.ID
	}
	rescued, err := c.rescued.RescuedJobs(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, j := range running {
		state := string(j.State)
		if rescued[j.ID] {
			state = stateRescued
		}
		counts[kindState{j.Kind, state}]++
	}
	return counts, nil
}
