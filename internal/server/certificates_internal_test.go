package server

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/certs"
	"github.com/keystone-app/keystone/internal/router/routerapi"
)

// heldCertificates is the certificate state a router's ACME manager would
// report (the real manager against Pebble is tested in internal/router).
type heldCertificates []certs.Info

func (h heldCertificates) Certificates() []certs.Info { return h }

// TestCertificatesFromTheRouter: keystone serve reads certificate state
// through the router's real admin API on its Unix socket, for the status
// page and as its own metrics; a router that stops answering turns the
// metrics' up gauge to 0 instead of failing the scrape.
func TestCertificatesFromTheRouter(t *testing.T) {
	expiry := time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC)
	held := heldCertificates{
		{Host: "web-shop.apps.test", Issuer: "Pebble Intermediate CA", NotAfter: expiry},
		{Host: "pr-3-web-shop.apps.test", LastError: "acme: urn:ietf:params:acme:error:rateLimited", LastErrorAt: expiry.Add(-time.Hour)},
	}
	rt, err := router.New(router.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "proxy.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: routerapi.Handler(rt, held), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	c := certificates{router: routerapi.NewClient(socket)}
	list, err := c.Certificates(t.Context())
	if err != nil || len(list) != 2 || list[0].Host != held[0].Host || !list[0].NotAfter.Equal(expiry) ||
		list[0].Issuer != held[0].Issuer || list[1].LastError != held[1].LastError || !list[1].LastErrorAt.Equal(held[1].LastErrorAt) {
		t.Fatalf("certificates = %+v, %v", list, err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := map[string]float64{
		`keystone_certificate_error{host="pr-3-web-shop.apps.test"}`:                                               1,
		`keystone_certificate_error{host="web-shop.apps.test"}`:                                                    0,
		`keystone_certificate_expiry_timestamp_seconds{host="web-shop.apps.test",issuer="Pebble Intermediate CA"}`: float64(expiry.Unix()),
		`keystone_certificate_state_up{}`:                                                                          1,
	}
	if got := gauges(t, reg); !maps.Equal(got, want) {
		t.Fatalf("metrics = %v, want %v", got, want)
	}

	srv.Close()
	if got := gauges(t, reg); !maps.Equal(got, map[string]float64{`keystone_certificate_state_up{}`: 0}) {
		t.Fatalf("metrics with the router gone = %v", got)
	}
}

// gauges gathers reg's gauges as name{label="value",...} → value.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}
