package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// sseEvent is one server-sent event as a browser would see it.
type sseEvent struct {
	id, event, data string
}

// eventStream is an open /events connection; events arrive on the channel,
// which is closed when the server ends the stream.
type eventStream struct {
	events <-chan sseEvent
	cancel context.CancelFunc
}

func (s *site) openEvents(c *client, deploymentID int64, query, lastEventID string) eventStream {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/deployments/%d/events%s", s.srv.URL, deploymentID, query), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		s.t.Fatalf("events: HTTP %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 100)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	s.t.Cleanup(cancel)
	return eventStream{events: ch, cancel: cancel}
}

// next returns the next event of the kind, skipping others, or fails.
func (e eventStream) next(t *testing.T, kind string) sseEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-e.events:
			if !ok {
				t.Fatalf("the stream ended before a %q event", kind)
			}
			if ev.event == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q event within 10s", kind)
		}
	}
}

// closed waits for the server to end the stream.
func (e eventStream) closed(t *testing.T) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-e.events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the stream did not end within 10s")
		}
	}
}

type lineData struct {
	Seq  int `json:"seq"`
	Segs []struct {
		T string `json:"t"`
		C string `json:"c"`
	} `json:"segs"`
}

func decodeLine(t *testing.T, ev sseEvent) lineData {
	t.Helper()
	var l lineData
	if err := json.Unmarshal([]byte(ev.data), &l); err != nil {
		t.Fatalf("line event data %q: %v", ev.data, err)
	}
	if ev.id != fmt.Sprint(l.Seq) {
		t.Fatalf("line event id %q for line %d: a reconnecting browser would resume wrongly", ev.id, l.Seq)
	}
	return l
}

func (l lineData) text() string {
	var b strings.Builder
	for _, s := range l.Segs {
		b.WriteString(s.T)
	}
	return b.String()
}

// TestLiveLogFollowsARunningDeployment: the stream sends the lines a page
// does not have, then each new line as it is written, state changes, and an
// end event once the deployment finishes, then closes.
func TestLiveLogFollowsARunningDeployment(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("vic")
	stream := s.openEvents(c, s.live.ID, "?after=1", "")
	if st := stream.next(t, "state"); !strings.Contains(st.data, `"state":"running"`) || !strings.Contains(st.data, "Building ddddddd") {
		t.Fatalf("first state event %q", st.data)
	}
	if l := decodeLine(t, stream.next(t, "line")); l.Seq != 2 || l.text() != "building" {
		t.Fatalf("first line after 1: %+v, want line 2 \"building\"", l)
	}
	ctx, db := t.Context(), s.store.Pool()
	if err := storetest.AddLogLines(ctx, db, s.live.ID, "\x1b[33m<b>compiled</b>\x1b[0m"); err != nil {
		t.Fatal(err)
	}
	l := decodeLine(t, stream.next(t, "line"))
	if l.Seq != 3 || len(l.Segs) != 1 || l.Segs[0].T != "<b>compiled</b>" || l.Segs[0].C != "ansi-yellow" {
		t.Fatalf("new line: %+v, want line 3 as text \"<b>compiled</b>\" of class ansi-yellow", l)
	}
	if err := storetest.AddLogLines(ctx, db, s.live.ID, "health: 200"); err != nil {
		t.Fatal(err)
	}
	if err := storetest.FinishDeployment(ctx, db, s.live.ID, store.StateSucceeded, "Deployed in 3.2s"); err != nil {
		t.Fatal(err)
	}
	if l := decodeLine(t, stream.next(t, "line")); l.Seq != 4 {
		t.Fatalf("last line %+v, want line 4", l)
	}
	if end := stream.next(t, "end"); !strings.Contains(end.data, `"state":"succeeded"`) || !strings.Contains(end.data, "Deployed in 3.2s") {
		t.Fatalf("end event %q", end.data)
	}
	stream.closed(t)
}

func TestLiveLogResumesFromLastEventID(t *testing.T) {
	s := newSite(t)
	// Last-Event-ID (a reconnection) wins over the page's ?after=.
	stream := s.openEvents(s.signedIn("vic"), s.serving.ID, "?after=0", "2")
	l := decodeLine(t, stream.next(t, "line"))
	if l.Seq != 3 {
		t.Fatalf("first line after Last-Event-ID 2 is %d", l.Seq)
	}
	// A finished deployment: its remaining lines, then the end.
	stream.next(t, "end")
	stream.closed(t)
}

func TestLiveLogStopsWhenTheBrowserLeaves(t *testing.T) {
	s := newSite(t)
	stream := s.openEvents(s.signedIn("vic"), s.live.ID, "", "")
	stream.next(t, "line")
	stream.cancel()
	stream.closed(t)
	// The server's Close waits for every handler: one still polling for a
	// browser that left (nothing to write until the next heartbeat, 15 s
	// away) would hold it.
	closed := make(chan struct{})
	go func() { s.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream's handler kept running after the browser left")
	}
}

// TestLiveLogEndsWhenKeystoneStops: when Run's context ends (SIGTERM), open
// streams end so that shutdown need not wait for them; browsers reconnect.
func TestLiveLogEndsWhenKeystoneStops(t *testing.T) {
	s := newSite(t)
	stream := s.openEvents(s.signedIn("vic"), s.live.ID, "", "")
	stream.next(t, "line")
	s.stopRun()
	stream.closed(t)
}

// TestLiveLogOutlivesServerTimeouts: the server's ReadTimeout and
// WriteTimeout (30 s read in production, short here) cut ordinary
// requests, not a live log: a line written after both have passed still
// reaches the open stream.
func TestLiveLogOutlivesServerTimeouts(t *testing.T) {
	s := newSite(t)
	c := s.signedIn("vic")
	const timeout = 300 * time.Millisecond
	short := httptest.NewUnstartedServer(s.handler)
	short.Config.ReadTimeout, short.Config.WriteTimeout = timeout, timeout
	short.Start()
	t.Cleanup(short.Close)
	orig := s.srv
	s.srv = short
	stream := s.openEvents(c, s.live.ID, "?after=1", "")
	s.srv = orig
	if l := decodeLine(t, stream.next(t, "line")); l.Seq != 2 {
		t.Fatalf("first line %+v, want line 2", l)
	}
	// Time itself is what this test is about: both deadlines pass while the
	// stream waits for the next line.
	time.Sleep(4 * timeout)
	if err := storetest.AddLogLines(t.Context(), s.store.Pool(), s.live.ID, "after the timeouts"); err != nil {
		t.Fatal(err)
	}
	if l := decodeLine(t, stream.next(t, "line")); l.Seq != 3 || l.text() != "after the timeouts" {
		t.Fatalf("line after the server's timeouts: %+v", l)
	}
}
