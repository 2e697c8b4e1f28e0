package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/keystone-app/keystone/internal/web"
)

// TestSignInBurstCannotBypassTheLimit performs the burst of issue 12 item
// 2: many wrong passwords for one name posted at once, each from its own
// address. Each attempt is recorded before the password is checked, so at
// most LoginFailureLimit of them are checked; the rest get 429. Another
// user still signs in.
func TestSignInBurstCannotBypassTheLimit(t *testing.T) {
	s := newSite(t)
	const burst = 24
	clients := make([]*client, burst)
	forms := make([]url.Values, burst)
	for i := range burst {
		clients[i] = s.from(fmt.Sprintf("198.51.100.%d:1000", i+1))
		forms[i] = url.Values{"csrf_token": {clients[i].csrf("/login")}, "name": {"vic"}, "password": {"wrong"}}
	}
	codes := make([]int, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() { codes[i] = clients[i].post("/login", forms[i]).status })
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[http.StatusUnauthorized] > web.LoginFailureLimit || count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != burst {
		t.Fatalf("answers %v: want at most %d passwords checked (401), the rest 429", count, web.LoginFailureLimit)
	}
	c := s.from("192.0.2.50:1000")
	if r := c.post("/login", url.Values{"csrf_token": {c.csrf("/login")}, "name": {"ada"}, "password": {password("ada")}}); r.status != http.StatusSeeOther {
		t.Fatalf("ada during vic's lock-out: HTTP %d", r.status)
	}
}
