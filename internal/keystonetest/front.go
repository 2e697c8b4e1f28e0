package keystonetest

import (
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// Front is a reverse proxy standing for Keystone's public address, as a
// tunnel would: its URL is known before Keystone starts (to be its
// KEYSTONE_PUBLIC_URL), and it follows Keystone across restarts, with no
// port to guess. The Host a client sent is passed on.
type Front struct {
	*httptest.Server
	target atomic.Pointer[url.URL]
}

// NewFront starts a Front with no target yet; it is closed with the test.
func NewFront(t testing.TB) *Front {
	f := &Front{}
	f.Server = httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		if u := f.target.Load(); u != nil {
			r.SetURL(u)
		}
		r.Out.Host = r.In.Host
	}})
	t.Cleanup(f.Close)
	return f
}

// To sends what arrives from now on to Keystone at rawURL.
func (f *Front) To(t testing.TB, rawURL string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("front: %v", err)
	}
	f.target.Store(u)
}
