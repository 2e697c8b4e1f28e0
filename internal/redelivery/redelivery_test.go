package redelivery_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/redelivery"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type env struct {
	st  *store.Store
	gh  *githubtest.Server
	app *github.App
	reg *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(t.Context(), storetest.Fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	srv := githubtest.New(t)
	srv.AddInstallation(42, "acme", "web")
	app, err := github.New(github.Config{AppID: srv.AppID, PrivateKeyPEM: srv.PrivateKeyPEM, APIURL: srv.URL,
		MaxAttempts: 1, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, gh: srv, app: app, reg: prometheus.NewRegistry()}
}

func (e *env) recoverer(t *testing.T, cfg redelivery.Config) *redelivery.Recoverer {
	t.Helper()
	cfg.Registerer = e.reg
	r, err := redelivery.New(e.st, e.app, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) store(t *testing.T, guid string) {
	t.Helper()
	if _, _, err := e.st.InsertDelivery(t.Context(), store.Delivery{GUID: guid, Event: "push", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
}

func redeliveredGUIDs(srv *githubtest.Server) []string {
	var out []string
	for _, d := range srv.Redelivered() {
		out = append(out, d.GUID)
	}
	return out
}

// TestRedeliversOnlyMissedFailures: of the listed deliveries only the failed
// ones of events Keystone handles, never answered 2xx and not stored, are
// asked for, oldest first, and counted in the metrics.
func TestRedeliversOnlyMissedFailures(t *testing.T) {
	e := newEnv(t)
	ago := func(d time.Duration) time.Time { return time.Now().Add(-d) }
	add := func(guid, event string, code int, at time.Time) {
		e.gh.AddDelivery(githubtest.Delivery{GUID: guid, Event: event, StatusCode: code, DeliveredAt: at, InstallationID: 42})
	}
	// In the order GitHub made them (its ids grow with time).
	add("too-old", "push", 502, ago(80*time.Hour))
	add("missed-push", "push", 502, ago(2*time.Hour))
	add("later-ok", "push", 503, ago(90*time.Minute))
	add("later-ok", "push", 202, ago(80*time.Minute)) // GitHub's own retry got through
	add("stored", "push", 504, ago(time.Hour))
	add("missed-ping", "ping", 502, ago(time.Hour))
	add("fine", "issue_comment", 202, ago(50*time.Minute))
	add("missed-comment", "issue_comment", 504, ago(40*time.Minute))
	e.store(t, "stored")

	res, err := e.recoverer(t, redelivery.Config{}).RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := redeliveredGUIDs(e.gh); fmt.Sprint(got) != "[missed-push missed-comment]" {
		t.Fatalf("redelivered %v, want [missed-push missed-comment]", got)
	}
	if res.Listed != 7 || res.Missing != 2 || res.Redelivered != 2 || !res.Complete {
		t.Errorf("result %+v, want 7 listed (not the one past three days), 2 missing and redelivered, complete", res)
	}
	if n := metricValue(t, e.reg, "keystone_webhook_deliveries_redelivered_total"); n != 2 {
		t.Errorf("redelivered metric %v, want 2", n)
	}
	if n := metricValue(t, e.reg, "keystone_webhook_deliveries_missing_total"); n != 2 {
		t.Errorf("missing metric %v, want 2", n)
	}
	for _, r := range e.gh.RequestsTo("", "/app/hook/") {
		if r.Auth != githubtest.AuthJWT {
			t.Errorf("%s %s not made as the App", r.Method, r.Path)
		}
	}
}

// metricValue returns the value of counter name (summed over labels).
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
}

// TestPassesReadBackToTheLastOne: a later pass reads only what came after
// the previous complete pass (less a margin), and a redelivery asked for is
// not asked for again while GitHub may still be sending it.
func TestPassesReadBackToTheLastOne(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.gh.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: 202, DeliveredAt: time.Now().Add(-time.Duration(i+1) * time.Hour)})
	}
	r := e.recoverer(t, redelivery.Config{Margin: time.Minute})
	first, err := r.RunOnce(t.Context())
	if err != nil || first.Listed != 5 {
		t.Fatalf("first pass %+v, %v; want 5 listed", first, err)
	}
	missed := e.gh.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: 502})
	second, err := r.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The new delivery and the redelivery GitHub recorded for it are not
	// listed yet at the time of the list; the old five are behind the cursor.
	if second.Listed != 1 || second.Redelivered != 1 {
		t.Errorf("second pass %+v, want only the new delivery listed and redelivered", second)
	}
	if got := redeliveredGUIDs(e.gh); len(got) != 1 || got[0] != missed.GUID {
		t.Errorf("redelivered %v", got)
	}
}

// TestPassesAreBounded: at most MaxRedeliveries per pass (the rest next
// time), at most MaxRequests per delivery, at most MaxPages read.
func TestPassesAreBounded(t *testing.T) {
	e := newEnv(t)
	var guids []string
	for i := range 5 {
		d := e.gh.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: 500, DeliveredAt: time.Now().Add(-time.Duration(10-i) * time.Minute)})
		guids = append(guids, d.GUID)
	}
	for range 3 { // GitHub was asked for this one three times already
		if err := e.st.NoteRedeliveryRequest(t.Context(), guids[0], 1); err != nil {
			t.Fatal(err)
		}
	}
	r := e.recoverer(t, redelivery.Config{MaxRedeliveries: 2, RequestGap: time.Nanosecond})
	res, err := r.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Redelivered != 2 || res.Complete || res.GivenUp != 1 {
		t.Fatalf("first pass %+v, want 2 redelivered, incomplete, 1 given up", res)
	}
	res, err = r.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := redeliveredGUIDs(e.gh); fmt.Sprint(got) != fmt.Sprint(guids[1:]) {
		t.Fatalf("redelivered %v, want all but the given-up one, in order", got)
	}
	if !res.Complete {
		t.Errorf("second pass %+v, want complete", res)
	}
	for range 150 {
		e.gh.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: 202})
	}
	limited, err := redelivery.New(e.st, e.app, redelivery.Config{MaxPages: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err = limited.RunOnce(t.Context())
	if err != nil || res.Complete || res.Listed != 100 {
		t.Errorf("page-limited pass %+v, %v; want 100 listed, incomplete", res, err)
	}
}

// TestOnePassAtATime: while another process makes a pass, a pass is skipped.
func TestOnePassAtATime(t *testing.T) {
	e := newEnv(t)
	release, ok, err := e.st.TryHoldLock(t.Context(), store.RedeliveryLockClass, 0)
	if err != nil || !ok {
		t.Fatalf("hold the lock: %v %v", ok, err)
	}
	res, err := e.recoverer(t, redelivery.Config{}).RunOnce(t.Context())
	release()
	if err != nil || !res.Skipped {
		t.Fatalf("pass while another runs = %+v, %v; want skipped", res, err)
	}
	if n := len(e.gh.RequestsTo("", "/app/hook/")); n != 0 {
		t.Errorf("%d requests while skipped", n)
	}
}

// TestGitHubFailureLeavesTheCursor: a pass that cannot list fails, is not
// complete, and the next pass reads the whole window again.
func TestGitHubFailureLeavesTheCursor(t *testing.T) {
	e := newEnv(t)
	d := e.gh.AddDelivery(githubtest.Delivery{Event: "push", StatusCode: 502, DeliveredAt: time.Now().Add(-time.Hour)})
	remove := e.gh.Inject(githubtest.Fault{PathPrefix: "/app/hook/deliveries", Status: 500})
	r := e.recoverer(t, redelivery.Config{})
	if _, err := r.RunOnce(t.Context()); err == nil {
		t.Fatal("pass succeeded while GitHub answered 500")
	}
	remove()
	res, err := r.RunOnce(t.Context())
	if err != nil || res.Redelivered != 1 {
		t.Fatalf("pass after GitHub recovered = %+v, %v", res, err)
	}
	if got := redeliveredGUIDs(e.gh); !slices.Equal(got, []string{d.GUID}) {
		t.Errorf("redelivered %v", got)
	}
}
