package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/store"
)

// PendingCounter counts pending entries, for the metrics read at scrape time.
type PendingCounter interface {
	OutboxPendingCounts(ctx context.Context) ([]store.OutboxCount, error)
}

type metrics struct {
	outcomes *prometheus.CounterVec
}

// newMetrics registers keystone_github_outbox_entries_total{kind,outcome}
// (outcome: sent, failed, squashed, skipped, retried, rate_limited; retried
// and rate_limited count attempts, the others entries) and the pending
// gauges read from the database, so every process reports the same truth.
func newMetrics(reg prometheus.Registerer, pending PendingCounter) (*metrics, error) {
	m := &metrics{outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keystone_github_outbox_entries_total",
		Help: "GitHub outbox entries by kind and outcome of a send: sent, failed, squashed, skipped (entries), retried, rate_limited (attempts).",
	}, []string{"kind", "outcome"})}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.outcomes); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register outbox metrics: %w", err)
		}
		m.outcomes = are.ExistingCollector.(*prometheus.CounterVec)
		return m, nil
	}
	if err := reg.Register(&pendingCollector{counter: pending,
		pending: prometheus.NewDesc("keystone_github_outbox_pending",
			"GitHub outbox entries waiting to be sent, by kind.", []string{"kind"}, nil),
		oldest: prometheus.NewDesc("keystone_github_outbox_oldest_pending_seconds",
			"Age of the oldest GitHub outbox entry waiting to be sent, by kind.", []string{"kind"}, nil),
	}); err != nil {
		return nil, fmt.Errorf("register outbox metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) outcome(kind, outcome string) { m.outcomes.WithLabelValues(kind, outcome).Inc() }

type pendingCollector struct {
	counter         PendingCounter
	pending, oldest *prometheus.Desc
}

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.pending; ch <- c.oldest }

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	counts, err := c.counter.OutboxPendingCounts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	seen := map[string]bool{}
	for _, n := range counts {
		seen[n.Kind] = true
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(n.Count), n.Kind)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, time.Since(n.Oldest).Seconds(), n.Kind)
	}
	for _, kind := range []string{KindStatus, KindComment, KindReaction, KindDeployment, KindDeploymentStatus} {
		if !seen[kind] {
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, 0, kind)
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, 0, kind)
		}
	}
}
