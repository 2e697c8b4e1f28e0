package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/store"
)

// JobCounter counts jobs by kind and state.
type JobCounter interface {
	JobCounts(ctx context.Context) ([]store.JobCount, error)
}

// JobsCollector exports keystone_jobs{kind,state}, read from the database at
// scrape time so that every process reports the same truth.
type JobsCollector struct {
	counter JobCounter
	logger  *slog.Logger
	desc    *prometheus.Desc
}

// NewJobsCollector returns the collector; register it on the metrics registry.
func NewJobsCollector(counter JobCounter, logger *slog.Logger) *JobsCollector {
	return &JobsCollector{
		counter: counter,
		logger:  logger,
		desc: prometheus.NewDesc("keystone_jobs", "Jobs in the queue by kind and state.",
			[]string{"kind", "state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *JobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *JobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	counts, err := c.counter.JobCounts(ctx)
	if err != nil {
		c.logger.Warn("metrics: count jobs", slog.String("error", err.Error()))
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.Count), n.Kind, n.State)
	}
}
