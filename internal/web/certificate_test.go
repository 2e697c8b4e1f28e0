package web_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/appurl"
	"github.com/keystone-app/keystone/internal/web"
	"github.com/keystone-app/keystone/internal/web/webtest"
)

// TestAppPageShowsItsCertificate: in domain mode over HTTPS the app page
// says whether the router holds a certificate for the app's host, its issuer
// and expiry, flags one close to expiry, and shows the last error getting
// one (escaped); it says nothing of certificates when apps are not served
// over HTTPS.
func TestAppPageShowsItsCertificate(t *testing.T) {
	const domain = "apps.example.com"
	https := appurl.Config{AppsDomain: domain, HTTPS: true}
	now := time.Now()
	cases := []struct {
		name   string
		apps   appurl.Config
		certs  func(host string) web.Certificates
		want   []string
		unwant []string
	}{
		{"issued", https, func(host string) web.Certificates {
			return webtest.Certificates{List: []web.Certificate{
				{Host: "other." + domain, Issuer: "Elsewhere CA", NotAfter: now.Add(80 * 24 * time.Hour)},
				{Host: host, Issuer: "Pebble Intermediate CA", NotAfter: now.Add(80 * 24 * time.Hour)}}}
		}, []string{`id="certificate"`, "Pebble Intermediate CA", `<span class="badge ok">certificate</span>`}, []string{"Elsewhere CA", "Last attempt failed"}},
		{"failing to renew", https, func(host string) web.Certificates {
			return webtest.Certificates{List: []web.Certificate{{Host: host, Issuer: "Pebble Intermediate CA",
				NotAfter: now.Add(5 * 24 * time.Hour), LastError: "acme: <rate limited>", LastErrorAt: now.Add(-time.Minute)}}}
		}, []string{`<span class="badge warn">certificate</span>`, "Last attempt failed", "acme: &lt;rate limited&gt;"}, nil},
		{"not yet", https, func(string) web.Certificates { return webtest.Certificates{} },
			[]string{`id="certificate"`, "the router asks for one at the first HTTPS request"}, nil},
		{"router unreachable", https, func(string) web.Certificates {
			return webtest.Certificates{Err: errors.New("dial unix /data/proxy.sock: connect refused")}
		}, []string{"The router cannot be asked about certificates right now."}, []string{"proxy.sock"}},
		{"plain http", appurl.Config{AppsDomain: domain}, func(host string) web.Certificates {
			return webtest.Certificates{List: []web.Certificate{{Host: host, Issuer: "Pebble"}}}
		}, nil, []string{`id="certificate"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var certs web.Certificates
			s := newSite(t, func(o *web.Options) {
				o.Apps = tc.apps
				o.Certificates = lateCertificates{&certs}
			})
			certs = tc.certs(appurl.Host(s.app, domain))
			r := s.signedIn("vic").get(s.appPath())
			mustContain(t, "app page", r.body, tc.want...)
			mustNotContain(t, "app page", r.body, tc.unwant...)
		})
	}
}

// lateCertificates answers with what *c holds when asked: the case's list
// needs the app the site seeds.
type lateCertificates struct{ c *web.Certificates }

func (l lateCertificates) Certificates(ctx context.Context) ([]web.Certificate, error) {
	return (*l.c).Certificates(ctx)
}
