package router_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/router"
	"github.com/keystone-app/keystone/internal/router/routertest"
	"github.com/keystone-app/keystone/internal/testlog"
)

// TestRefusalsAreCountedAndLogged: every request the router refuses itself
// (a malformed Host, a Host no route has) and every handshake refused for an
// unknown server name (any failed TLS handshake) is counted by reason and accounted for in summary log
// lines, one per reason and window, however many arrive: a flood of garbage
// cannot flood the log. Routed requests are not counted.
func TestRefusalsAreCountedAndLogged(t *testing.T) {
	var logs testlog.Buffer
	r, err := router.New(router.Options{StateDir: t.TempDir(), RejectLogEvery: 50 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	app := routertest.NewBackend(t, "app")
	if _, err := r.Put(t.Context(), router.Route{Service: "web", Hosts: []string{"web.apps.test"}, Target: app.Addr()}); err != nil {
		t.Fatal(err)
	}
	send := func(host string) int {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return rec.Code
	}
	errorLog := r.ServerErrorLog(slog.New(slog.NewJSONHandler(&logs, nil)))
	want := map[string]int64{}
	for i := range 500 {
		if code := send("no-such-" + strings.Repeat("x", i%90) + ".apps.test"); code != http.StatusNotFound {
			t.Fatalf("unknown host: %d", code)
		}
		want[router.RejectUnknownHost]++
		if i%5 == 0 {
			if code := send("bad host\x01/" + strings.Repeat("y", i)); code != http.StatusBadRequest {
				t.Fatalf("malformed host: %d", code)
			}
			want[router.RejectMalformedHost]++
		}
		if i%50 == 0 {
			errorLog.Printf("http: TLS handshake error from 127.0.0.1:%d: no route for host %q", 40000+i, strings.Repeat("z", i))
			want[router.RejectTLSHandshake]++
		}
		if code := send("web.apps.test"); code != http.StatusOK {
			t.Fatalf("routed host: %d", code)
		}
	}

	errorLog.Print("http: some other server error") // not a refusal: passed on as it is
	got := r.Rejected()
	for _, reason := range router.RejectReasons {
		if got[reason] != want[reason] {
			t.Errorf("Rejected()[%s] = %d, want %d", reason, got[reason], want[reason])
		}
	}
	// The log accounts for each refusal in far fewer lines than requests.
	var logged map[string]int64
	var lines int
	routertest.Eventually(t, 5*time.Second, "every refusal in the log", func() bool {
		logged, lines = map[string]int64{}, 0
		for _, l := range strings.Split(logs.String(), "\n") {
			var e struct {
				Msg, Reason, Example string
				Count                int64
			}
			if json.Unmarshal([]byte(l), &e) != nil || e.Msg != "router: refused" {
				continue
			}
			if len(e.Example) > 90 {
				t.Fatalf("an example of %d bytes: %q", len(e.Example), e.Example)
			}
			logged[e.Reason] += e.Count
			lines++
		}
		for _, reason := range router.RejectReasons {
			if logged[reason] != want[reason] {
				return false
			}
		}
		return true
	})
	if !strings.Contains(logs.String(), `"msg":"http: some other server error"`) {
		t.Errorf("the server's other errors are not passed on:\n%s", logs.String())
	}
	if total := want[router.RejectUnknownHost] + want[router.RejectMalformedHost]; lines >= int(total)/10 {
		t.Errorf("%d log lines for %d refusals: not summarised", lines, total)
	}
}
