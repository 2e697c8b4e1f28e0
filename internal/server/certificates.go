package server

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/router/certs"
	"github.com/keystone-app/keystone/internal/web"
)

// certificateLister is the part of `keystone proxy`'s admin client that
// reads certificate state. *routerapi.Client implements it.
type certificateLister interface {
	Certificates(ctx context.Context) ([]certs.Info, error)
}

// certificates is the router's certificate state (SPEC §13) for the status
// page and for keystone serve's /metrics, read from the router's admin API
// each time: the router holds it, Keystone keeps no copy to go stale.
type certificates struct{ router certificateLister }

// certificatesScrapeTimeout bounds a /metrics scrape's question to the router.
const certificatesScrapeTimeout = 2 * time.Second

// Certificates implements web.Certificates.
func (c certificates) Certificates(ctx context.Context) ([]web.Certificate, error) {
	list, err := c.router.Certificates(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask the router for certificates: %w", err)
	}
	out := make([]web.Certificate, 0, len(list))
	for _, i := range list {
		out = append(out, web.Certificate{Host: i.Host, Issuer: i.Issuer, NotAfter: i.NotAfter,
			LastError: i.LastError, LastErrorAt: i.LastErrorAt})
	}
	return out, nil
}

var (
	descCertExpiry = prometheus.NewDesc("keystone_certificate_expiry_timestamp_seconds",
		"Expiry of the router's certificate for an app's host name.", []string{"host", "issuer"}, nil)
	descCertError = prometheus.NewDesc("keystone_certificate_error",
		"1 when the router's last attempt to get a host's certificate failed.", []string{"host"}, nil)
	descCertUp = prometheus.NewDesc("keystone_certificate_state_up",
		"1 when the router answered the question for certificate state at this scrape.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c certificates) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCertExpiry
	ch <- descCertError
	ch <- descCertUp
}

// Collect implements prometheus.Collector. A router that does not answer
// gives keystone_certificate_state_up 0 rather than a failed scrape.
func (c certificates) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), certificatesScrapeTimeout)
	defer cancel()
	list, err := c.Certificates(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descCertUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descCertUp, prometheus.GaugeValue, 1)
	for _, i := range list {
		if !i.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(i.NotAfter.Unix()), i.Host, i.Issuer)
		}
		failed := 0.0
		if i.LastError != "" {
			failed = 1
		}
		ch <- prometheus.MustNewConstMetric(descCertError, prometheus.GaugeValue, failed, i.Host)
	}
}
