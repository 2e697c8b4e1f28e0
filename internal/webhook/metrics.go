package webhook

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	deliveries *prometheus.CounterVec
	ack        prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keystone_webhook_deliveries_total",
			Help: "Webhook deliveries received, by event and outcome (accepted, ignored, duplicate, unauthorized, bad_request, too_large, unavailable).",
		}, []string{"event", "outcome"}),
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keystone_webhook_ack_seconds",
			Help:    "Time from request to answer for POST /webhooks/github.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.deliveries, m.ack} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register webhook metrics: %w", err)
			}
		}
	}
	return m, nil
}

// observe counts one answered delivery. The event label is the header only when
// it is an event go-github knows, so a sender cannot grow the label set.
func (m *metrics) observe(event, outcome string, took time.Duration) {
	if !knownEvents[event] {
		event = "other"
	}
	m.deliveries.WithLabelValues(event, outcome).Inc()
	m.ack.Observe(took.Seconds())
}
