package router

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRetryOnDialError: a request whose target refused the connection is sent
// once more to the service's current target when it is idempotent, and not
// when it is a POST.
func TestRetryOnDialError(t *testing.T) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer live.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	r := &Router{}
	svc := &service{current: newBackend(strings.TrimPrefix(live.URL, "http://"))}
	tr := &retryTransport{base: newTransport(), router: r}
	for method, wantOK := range map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodPost: false} {
		st := &reqState{svc: svc, backend: newBackend(dead)}
		req, _ := http.NewRequestWithContext(context.WithValue(context.Background(), stateKey{}, st), method, "http://"+dead+"/", nil)
		resp, err := tr.RoundTrip(req)
		if (err == nil) != wantOK {
			t.Errorf("%s: err = %v, want retried=%v", method, err, wantOK)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}
