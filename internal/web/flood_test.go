package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

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

// TestLiveLogStreamsAreCapped: one session may hold at most
// 8 live-log streams; the next is refused with 429
// until one ends, and another session is not affected.
func TestLiveLogStreamsAreCapped(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("vic")
	var open []eventStream
	for range web.MaxStreamsPerSession {
		st := s.openEvents(c, s.live.ID, "", "")
		st.next(t, "state")
		open = append(open, st)
	}
	status := func(c *client) int {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/deployments/%d/events", s.srv.URL, s.live.ID), nil)
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(c); got != http.StatusTooManyRequests {
		t.Fatalf("stream %d of one session: HTTP %d, want 429", web.MaxStreamsPerSession+1, got)
	}
	other := s.openEvents(s.signedIn("ada"), s.live.ID, "", "")
	other.next(t, "state")
	other.cancel()
	open[0].cancel()
	deadline := time.Now().Add(10 * time.Second)
	for status(c) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("a stream ended, yet the session still may not open another")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
