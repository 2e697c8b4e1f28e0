package router_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routertest"
)

func newRouter(t *testing.T, dir string) (*router.Router, *httptest.Server) {
	t.Helper()
	r, err := router.New(router.Options{StateDir: dir, PortHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	front := httptest.NewServer(r)
	t.Cleanup(front.Close)
	return r, front
}

func put(t *testing.T, r *router.Router, rt router.Route) {
	t.Helper()
	if _, err := r.Put(context.Background(), rt); err != nil {
		t.Fatal(err)
	}
}

// get sends a request for host through front and returns status and body.
func get(t *testing.T, client *http.Client, front, host, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, front+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRoutesByHost(t *testing.T) {
	r, front := newRouter(t, t.TempDir())
	web, api := routertest.NewBackend(t, "web"), routertest.NewBackend(t, "api")
	put(t, r, router.Route{Service: "web", Hosts: []string{"Web.Apps.Example.com"}, Target: web.Addr()})
	put(t, r, router.Route{Service: "api", Hosts: []string{"api.apps.example.com", "api2.apps.example.com"}, Target: api.Addr()})
	c := front.Client()
	cases := []struct{ host, path, want string }{
		{"web.apps.example.com", "/", "web"},
		{"WEB.apps.example.com:8080", "/", "web"},
		{"web.apps.example.com.", "/", "web"},
		{"api.apps.example.com", "/", "api"},
		{"api2.apps.example.com", "/", "api"},
		{"web.apps.example.com", "/headers", "host=web.apps.example.com xff=127.0.0.1 proto=http xfh=web.apps.example.com"},
	}
	for _, tc := range cases {
		if code, body := get(t, c, front.URL, tc.host, tc.path); code != 200 || body != tc.want {
			t.Errorf("%s%s = %d %q, want 200 %q", tc.host, tc.path, code, body, tc.want)
		}
	}
	// No app is a default: an unknown host or the bare domain gets the 404 page.
	for _, host := range []string{"other.apps.example.com", "apps.example.com", "127.0.0.1"} {
		code, body := get(t, c, front.URL, host, "/")
		if code != 404 || !strings.Contains(body, "No app is served at") {
			t.Errorf("%s = %d %q, want the 404 page", host, code, body)
		}
	}
}

// TestHostileHostHeaders: huge, malformed and script-bearing Host headers get
// 400 or 404, and the router keeps serving.
func TestHostileHostHeaders(t *testing.T) {
	r, front := newRouter(t, t.TempDir())
	web := routertest.NewBackend(t, "web")
	put(t, r, router.Route{Service: "web", Hosts: []string{"web.example.com"}, Target: web.Addr()})
	addr := strings.TrimPrefix(front.URL, "http://")
	cases := []struct {
		host string
		want []int
	}{
		{strings.Repeat("a", 300) + ".example.com", []int{400}},
		{strings.Repeat("a.", 200) + "com", []int{400}},
		{"<script>alert(1)</script>", []int{400}},
		{"web.example.com\x00evil", []int{400}},
		{"web..example.com", []int{404}},
		{"", []int{400}},
	}
	for _, tc := range cases {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tc.host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("host %.40q: %v", tc.host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		ok := false
		for _, w := range tc.want {
			ok = ok || resp.StatusCode == w
		}
		if !ok || strings.Contains(string(body), "<script>") {
			t.Errorf("host %.40q: %d %q, want %v and no markup echoed", tc.host, resp.StatusCode, body, tc.want)
		}
	}
	if code, body := get(t, front.Client(), front.URL, "web.example.com", "/"); code != 200 || body != "web" {
		t.Fatalf("after hostile hosts: %d %q", code, body)
	}
}

func TestHostBelongsToOneService(t *testing.T) {
	r, _ := newRouter(t, t.TempDir())
	a := routertest.NewBackend(t, "a")
	put(t, r, router.Route{Service: "a", Hosts: []string{"a.example.com"}, Target: a.Addr()})
	_, err := r.Put(context.Background(), router.Route{Service: "b", Hosts: []string{"A.example.com"}, Target: a.Addr()})
	if !errors.Is(err, router.ErrHostTaken) {
		t.Fatalf("claiming another service's host: err = %v, want ErrHostTaken", err)
	}
	for _, bad := range []router.Route{
		{Service: "../x", Hosts: []string{"x.example.com"}, Target: a.Addr()},
		{Service: "x", Hosts: []string{"x.example.com"}, Target: "nohostport"},
		{Service: "x", Target: a.Addr()},
		{Service: "x", Hosts: []string{"bad host"}, Target: a.Addr()},
	} {
		if _, err := r.Put(context.Background(), bad); !errors.Is(err, router.ErrBadRoute) {
			t.Errorf("Put(%+v) = %v, want ErrBadRoute", bad, err)
		}
	}
	if got := len(r.Routes()); got != 1 {
		t.Fatalf("routes = %d, want 1", got)
	}
}

// TestSwitchDrainsInFlight: a slow request on the old target finishes on it,
// new requests go to the new target at once, and Switch returns only after
// the drain, counting the drained request.
func TestSwitchDrainsInFlight(t *testing.T) {
	r, front := newRouter(t, t.TempDir())
	v1, v2 := routertest.NewBackend(t, "v1"), routertest.NewBackend(t, "v2")
	put(t, r, router.Route{Service: "web", Hosts: []string{"web.example.com"}, Target: v1.Addr()})
	c := front.Client()

	slow := holdRequest(front.URL, "web.example.com")
	routertest.Eventually(t, 5*time.Second, "the held request in flight", func() bool { return v1.SlowInFlight() == 1 })

	done := make(chan router.SwitchResult, 1)
	start := time.Now()
	go func() {
		res, err := r.Switch(context.Background(), "web", router.SwitchRequest{Target: v2.Addr(), HealthPath: "/up"})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	routertest.Eventually(t, 5*time.Second, "route moved to v2", func() bool {
		rt, _ := r.Route("web")
		return rt.Target == v2.Addr()
	})
	if code, body := get(t, c, front.URL, "web.example.com", "/"); code != 200 || body != "v2" {
		t.Fatalf("during drain: %d %q, want v2", code, body)
	}
	select {
	case res := <-done:
		t.Fatalf("Switch returned before the held request finished: %+v", res)
	default:
	}
	v1.Release()
	res := <-done
	if got := <-slow; got != "200 v1" {
		t.Fatalf("slow request = %q, want 200 v1", got)
	}
	if res.Drained != 1 || res.Failed != 0 || res.DrainTimedOut != 0 || res.Previous != v1.Addr() {
		t.Fatalf("result = %+v, want 1 drained from v1 (%s; v2 %s)", res, v1.Addr(), v2.Addr())
	}
	t.Logf("switch took %v", time.Since(start))
}

func TestSwitchDrainTimeout(t *testing.T) {
	r, front := newRouter(t, t.TempDir())
	v1, v2 := routertest.NewBackend(t, "v1"), routertest.NewBackend(t, "v2")
	put(t, r, router.Route{Service: "web", Hosts: []string{"web.example.com"}, Target: v1.Addr()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/slow?ms=60000", nil)
		req.Host = "web.example.com"
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	routertest.Eventually(t, 5*time.Second, "the stuck request in flight", func() bool { return r.Stats()[0].Requests == 1 })
	res, err := r.Switch(context.Background(), "web", router.SwitchRequest{Target: v2.Addr(), DrainTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.DrainTimedOut != 1 || res.Drained != 0 || res.DrainMillis < 200 {
		t.Fatalf("result = %+v, want 1 timed out after >= 200 ms", res)
	}
}

// TestSwitchHealthGate: a target that never turns healthy is refused and the
// service keeps its old target.
func TestSwitchHealthGate(t *testing.T) {
	r, front := newRouter(t, t.TempDir())
	v1 := routertest.NewBackend(t, "v1")
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer sick.Close()
	put(t, r, router.Route{Service: "web", Hosts: []string{"web.example.com"}, Target: v1.Addr()})
	for _, req := range []router.SwitchRequest{
		{Target: strings.TrimPrefix(sick.URL, "http://"), HealthPath: "/up", HealthTimeout: 300 * time.Millisecond},
		{Target: closedPort(t), HealthTimeout: 300 * time.Millisecond},
	} {
		if _, err := r.Switch(context.Background(), "web", req); !errors.Is(err, router.ErrUnhealthy) {
			t.Fatalf("switch to %s: err = %v, want ErrUnhealthy", req.Target, err)
		}
	}
	if code, body := get(t, front.Client(), front.URL, "web.example.com", "/"); code != 200 || body != "v1" {
		t.Fatalf("after refused switches: %d %q, want v1", code, body)
	}
	if _, err := r.Switch(context.Background(), "nope", router.SwitchRequest{Target: v1.Addr()}); !errors.Is(err, router.ErrNotFound) {
		t.Fatalf("switch of unknown service: %v", err)
	}
}

// TestRestartRestoresRoutes: a new Router on the same directory serves the
// routes the old one had, including a switch, without anyone re-sending them.
func TestRestartRestoresRoutes(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := routertest.NewBackend(t, "v1"), routertest.NewBackend(t, "v2")
	r1, _ := newRouter(t, dir)
	put(t, r1, router.Route{Service: "web", Hosts: []string{"web.example.com"}, Target: v1.Addr()})
	put(t, r1, router.Route{Service: "gone", Hosts: []string{"gone.example.com"}, Target: v1.Addr()})
	if _, err := r1.Switch(context.Background(), "web", router.SwitchRequest{Target: v2.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := r1.Delete(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	r1.Close()

	r2, front := newRouter(t, dir)
	if got := fmt.Sprint(r2.Routes()); got != fmt.Sprint(r1.Routes()) {
		t.Fatalf("restored %s, want %s", got, fmt.Sprint(r1.Routes()))
	}
	if code, body := get(t, front.Client(), front.URL, "web.example.com", "/"); code != 200 || body != "v2" {
		t.Fatalf("after restart: %d %q, want v2", code, body)
	}
	if code, _ := get(t, front.Client(), front.URL, "gone.example.com", "/"); code != 404 {
		t.Fatalf("deleted route after restart: %d, want 404", code)
	}
}

// TestPortMode: in IP mode the router owns the app's host port and switches
// it like a host name.
func TestPortMode(t *testing.T) {
	r, _ := newRouter(t, t.TempDir())
	v1, v2 := routertest.NewBackend(t, "v1"), routertest.NewBackend(t, "v2")
	port := freePort(t)
	put(t, r, router.Route{Service: "web", Port: port, Target: v1.Addr()})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := &http.Client{Timeout: 5 * time.Second}
	if code, body := get(t, c, url, "anything", "/"); code != 200 || body != "v1" {
		t.Fatalf("port %d: %d %q", port, code, body)
	}
	if _, err := r.Switch(context.Background(), "web", router.SwitchRequest{Target: v2.Addr()}); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, c, url, "anything", "/"); code != 200 || body != "v2" {
		t.Fatalf("after switch: %d %q", code, body)
	}
	if _, err := r.Put(context.Background(), router.Route{Service: "other", Port: port, Target: v1.Addr()}); !errors.Is(err, router.ErrPortTaken) {
		t.Fatalf("second service on the port: %v", err)
	}
	if err := r.Delete(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	routertest.Eventually(t, 5*time.Second, "port closed", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// TestStreamsPassUnbuffered: an SSE event and WebSocket frames reach the
// client while the app's response is still open.
func TestStreamsPassUnbuffered(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			fmt.Fprint(w, "data: last\n\n")
		case "/ws":
			if req.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "want upgrade", 400)
				return
			}
			conn, rw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			io.Copy(conn, rw) // echo until the client closes
		}
	}))
	defer app.Close()
	r, front := newRouter(t, t.TempDir())
	put(t, r, router.Route{Service: "live", Hosts: []string{"live.example.com"}, Target: strings.TrimPrefix(app.URL, "http://")})
	addr := strings.TrimPrefix(front.URL, "http://")

	t.Run("sse", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, "GET /events HTTP/1.1\r\nHost: live.example.com\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("first event = %q, %v (buffered?)", line, err)
		}
		once.Do(func() { close(release) })
	})
	t.Run("websocket", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: live.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		for _, msg := range []string{"ping\n", "pong\n"} {
			fmt.Fprint(conn, msg)
			got, err := br.ReadString('\n')
			if err != nil || got != msg {
				t.Fatalf("echo = %q, %v, want %q", got, err, msg)
			}
		}
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func closedPort(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

// TestSwitchWaitsForAnEarlierDrain: a switch whose caller hung up while it
// drained (Keystone killed mid-switch) leaves a request in flight on the
// target it replaced; the next switch waits for that request too before it
// returns, as its caller then stops every target but the new one.
func TestSwitchWaitsForAnEarlierDrain(t *testing.T) {
	r, front := newRouter(t, t.TempDir())
	v1, v2, v3 := routertest.NewBackend(t, "v1"), routertest.NewBackend(t, "v2"), routertest.NewBackend(t, "v3")
	put(t, r, router.Route{Service: "web", Hosts: []string{"web.example.com"}, Target: v1.Addr()})
	slow := holdRequest(front.URL, "web.example.com")
	routertest.Eventually(t, 5*time.Second, "the held request in flight", func() bool { return v1.SlowInFlight() == 1 })

	// The first switch's caller goes away during the drain.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := r.Switch(ctx, "web", router.SwitchRequest{Target: v2.Addr()})
		first <- err
	}()
	routertest.Eventually(t, 5*time.Second, "route moved to v2", func() bool {
		rt, _ := r.Route("web")
		return rt.Target == v2.Addr()
	})
	cancel()
	if err := <-first; err != nil {
		t.Fatal(err)
	}

	done := make(chan router.SwitchResult, 1)
	go func() {
		res, err := r.Switch(context.Background(), "web", router.SwitchRequest{Target: v3.Addr()})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	routertest.Eventually(t, 5*time.Second, "route moved to v3", func() bool {
		rt, _ := r.Route("web")
		return rt.Target == v3.Addr()
	})
	// Asked at once and again a moment later: the switch is still draining.
	for range 2 {
		select {
		case res := <-done:
			t.Fatalf("the second switch returned while a request was in flight on v1: %+v", res)
		case <-time.After(200 * time.Millisecond):
		}
	}
	v1.Release()
	res := <-done
	if got := <-slow; got != "200 v1" {
		t.Fatalf("slow request = %q, want 200 v1", got)
	}
	if res.DrainTimedOut != 0 || res.Previous != v2.Addr() {
		t.Fatalf("result = %+v, want nothing timed out, previous v2 (%s)", res, v2.Addr())
	}
}

// holdRequest sends GET /hold with Host host through front in the
// background; its answer ("status body", or the error) arrives on the
// channel once the backend lets it go.
func holdRequest(front, host string) <-chan string {
	slow := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, front+"/hold", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	return slow
}
