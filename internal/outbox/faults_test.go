package outbox_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestOutageThenRateLimitsLoseNothing: GitHub answers 500 to everything for
// 8 s (twice MaxBackoff, so backoff reaches its cap) while two deployments
// move along, then rate-limits (429 with
// Retry-After, a secondary 403 without a wait, a primary 403 until a reset).
// Every status arrives exactly once and in order, the reply comment is
// posted once and ends with the last body, no request goes out while GitHub
// asked to wait, and failed statuses are retried no faster than the backoff.
func TestOutageThenRateLimitsLoseNothing(t *testing.T) {
	e := newEnv(t)
	outage := 2 * outboxtest.Config().MaxBackoff
	start := time.Now()
	outageEnd := start.Add(outage)
	reset := outageEnd.Add(5 * time.Second) // x-ratelimit-reset counts whole seconds
	e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 500, Until: outageEnd})
	e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 429, RetryAfter: 3 * time.Second, Times: 1})
	e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 403, Times: 1})
	e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 403, ResetAt: reset, Times: 1})
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())

	th := outbox.Thread{Issue: 9, Key: "reply:77"}
	var lastBody string
	for i, s := range deploySteps { // the deployments move while GitHub is down
		e.tx(t, func(q *store.Queries) error {
			for _, sha := range []string{shaA, shaB} {
				if _, err := outbox.EnqueueStatus(t.Context(), q, target, status(sha, s.state, s.desc)); err != nil {
					return err
				}
			}
			lastBody = fmt.Sprintf("reply after step %d (%s)", i, s.desc)
			_, err := outbox.EnqueueComment(t.Context(), q, target, th, lastBody)
			return err
		})
		// The pace of a deployment, not a wait for a condition: the steps
		// spread over the outage.
		time.Sleep(outage / time.Duration(len(deploySteps)+1))
	}
	outboxtest.WaitIdle(t, e.st, outage+60*time.Second)

	for _, sha := range []string{shaA, shaB} {
		if got := descriptions(e.gh.Statuses(fullRepo, sha)); fmt.Sprint(got) != fmt.Sprint(wantDescriptions()) {
			t.Errorf("statuses of %s = %q\nwant %q", sha[:7], got, wantDescriptions())
		}
	}
	comments := e.gh.Comments(fullRepo, 9)
	if len(comments) != 1 || !strings.HasPrefix(comments[0].Body, lastBody) {
		t.Fatalf("comments on #9 = %+v, want one ending at %q", comments, lastBody)
	}
	reqs := e.gh.RequestsTo("", "/repos/")
	checkWaitsHonoured(t, reqs, reset)
	checkBackoff(t, reqs, outageEnd)
	if n := countStatus(reqs, http.StatusInternalServerError); n == 0 {
		t.Fatal("no request met the outage: the test proves nothing")
	}
	if time.Since(start) < outage {
		t.Fatalf("done before the outage ended")
	}
}

// checkWaitsHonoured fails if a request followed a rate-limit answer sooner
// than GitHub asked: Retry-After, the reset, or at least MinBackoff.
func checkWaitsHonoured(t *testing.T, reqs []githubtest.Request, reset time.Time) {
	t.Helper()
	limited := 0
	for i, r := range reqs {
		if r.Status != http.StatusTooManyRequests && r.Status != http.StatusForbidden {
			continue
		}
		limited++
		var until time.Time // in the order injected
		switch limited {
		case 1:
			until = r.At.Add(3 * time.Second) // 429 Retry-After: 3
		case 2:
			until = r.At.Add(outboxtest.Config().MinBackoff) // secondary 403 naming no wait
		default:
			until = reset // primary 403: x-ratelimit-reset
		}
		if i+1 < len(reqs) && reqs[i+1].At.Before(until.Add(-100*time.Millisecond)) {
			t.Errorf("request %s %s at %s followed rate limit %d (%d at %s) before %s",
				reqs[i+1].Method, reqs[i+1].Path, reqs[i+1].At.Format("15:04:05.000"), limited, r.Status,
				r.At.Format("15:04:05.000"), until.Format("15:04:05.000"))
		}
	}
	if limited != 3 {
		t.Errorf("%d rate-limited answers, want the 3 injected", limited)
	}
}

// checkBackoff fails if a status post failed with 500 was tried again
// sooner than MinBackoff during the outage (POSTs are never retried inline).
func checkBackoff(t *testing.T, reqs []githubtest.Request, outageEnd time.Time) {
	t.Helper()
	last := map[string]time.Time{}
	for _, r := range reqs {
		if r.Method != http.MethodPost || !strings.Contains(r.Path, "/statuses/") || r.At.After(outageEnd) {
			continue
		}
		if prev, ok := last[r.Path]; ok && r.At.Sub(prev) < outboxtest.Config().MinBackoff-100*time.Millisecond {
			t.Errorf("%s retried %s after the previous attempt, want at least %s", r.Path, r.At.Sub(prev), outboxtest.Config().MinBackoff)
		}
		last[r.Path] = r.At
	}
}

func countStatus(reqs []githubtest.Request, code int) int {
	n := 0
	for _, r := range reqs {
		if r.Status == code {
			n++
		}
	}
	return n
}

// TestUnknownOutcomeIsNotRepeated: GitHub acts on a post but the answer
// comes after the client gave up. The retry finds what landed (the comment by
// its marker, the status as the newest of its context) instead of posting
// again.
func TestUnknownOutcomeIsNotRepeated(t *testing.T) {
	e := newEnv(t, func(c *github.Config) { c.RequestTimeout = 700 * time.Millisecond })
	e.gh.Inject(githubtest.Fault{Method: "POST", PathPrefix: "/repos/acme/web/issues/4/comments", Stall: 3 * time.Second, Times: 1})
	e.gh.Inject(githubtest.Fault{Method: "POST", PathPrefix: "/repos/acme/web/statuses/", Stall: 3 * time.Second, Times: 1})
	th := outbox.Thread{Issue: 4, Key: "reply:1"}
	e.tx(t, func(q *store.Queries) error {
		if _, err := outbox.EnqueueComment(t.Context(), q, target, th, "posted once"); err != nil {
			return err
		}
		_, err := outbox.EnqueueStatus(t.Context(), q, target, status(shaA, "pending", "Queued"))
		return err
	})
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(t, e.st, 30*time.Second)

	if n := len(e.gh.RequestsTo("POST", "/repos/acme/web/issues/4/comments")); n != 1 {
		t.Errorf("%d comment posts, want 1", n)
	}
	if n := len(e.gh.RequestsTo("GET", "/repos/acme/web/issues/4/comments")); n == 0 {
		t.Errorf("the comment was not looked for after the lost answer: the test proves nothing")
	}
	if c := e.gh.Comments(fullRepo, 4); len(c) != 1 {
		t.Errorf("%d comments, want 1", len(c))
	}
	if s := e.gh.Statuses(fullRepo, shaA); len(s) != 1 {
		t.Errorf("%d statuses, want 1", len(s))
	}
	if n := len(e.gh.RequestsTo("GET", "/repos/acme/web/commits/"+shaA+"/statuses")); n == 0 {
		t.Errorf("the status was not looked for after the lost answer")
	}
}

// TestResumesAfterCrashMidSend: a process died after GitHub acted on its
// posts and before it recorded them (attempts counted, results lost). The
// next process edits the comment it finds and does not repeat the status.
func TestResumesAfterCrashMidSend(t *testing.T) {
	e := newEnv(t)
	th := outbox.Thread{Issue: 6, Key: "deploy:web"}
	e.tx(t, func(q *store.Queries) error {
		if _, err := outbox.EnqueueComment(t.Context(), q, target, th, "final body"); err != nil {
			return err
		}
		_, err := outbox.EnqueueStatus(t.Context(), q, target, status(shaA, "pending", "Queued"))
		return err
	})
	// What the dead process did: counted its attempts, then GitHub acted.
	ctx := t.Context()
	if _, err := e.st.Pool().Exec(ctx, `UPDATE github_outbox SET attempts = 1`); err != nil {
		t.Fatal(err)
	}
	thread, err := e.st.CommentThread(ctx, inst, "acme", "web", 6, th.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.StartThreadPost(ctx, thread.ID); err != nil {
		t.Fatal(err)
	}
	e.gh.AddComment(fullRepo, 6, e.gh.Slug+"[bot]", "early body\n\n"+th.Marker())
	if err := e.app.CreateStatus(ctx, inst, "acme", "web", shaA, github.Status{State: "pending", Description: "Queued",
		Context: "keystone/web", TargetURL: "https://keystone.example/deployments/7"}); err != nil {
		t.Fatal(err)
	}

	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	c := e.gh.Comments(fullRepo, 6)
	if len(c) != 1 || !strings.HasPrefix(c[0].Body, "final body") {
		t.Errorf("comments = %+v, want the found one edited to the final body", c)
	}
	if s := e.gh.Statuses(fullRepo, shaA); len(s) != 1 {
		t.Errorf("%d statuses, want 1", len(s))
	}
}

// TestFailingKeyBlocksOnlyItself: statuses of one SHA keep failing; those
// of another SHA and the comments go on, and the failing ones arrive in order
// once GitHub recovers.
func TestFailingKeyBlocksOnlyItself(t *testing.T) {
	e := newEnv(t)
	remove := e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/acme/web/statuses/" + shaA, Status: 502})
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	for _, s := range deploySteps {
		e.tx(t, func(q *store.Queries) error {
			for _, sha := range []string{shaA, shaB} {
				if _, err := outbox.EnqueueStatus(t.Context(), q, target, status(sha, s.state, s.desc)); err != nil {
					return err
				}
			}
			_, err := outbox.EnqueueComment(t.Context(), q, target, outbox.Thread{Issue: 2, Key: "reply:5"}, s.desc)
			return err
		})
	}
	last := deploySteps[len(deploySteps)-1].desc
	waitFor(t, 20*time.Second, "the other SHA's statuses and the comment", func() bool {
		c := e.gh.Comments(fullRepo, 2)
		return len(e.gh.Statuses(fullRepo, shaB)) == len(deploySteps) && len(c) == 1 && strings.HasPrefix(c[0].Body, last)
	})
	if n := len(e.gh.Statuses(fullRepo, shaA)); n != 0 {
		t.Fatalf("%d statuses of the failing SHA arrived", n)
	}
	remove()
	outboxtest.WaitIdle(t, e.st, 30*time.Second)
	if got := descriptions(e.gh.Statuses(fullRepo, shaA)); fmt.Sprint(got) != fmt.Sprint(wantDescriptions()) {
		t.Errorf("statuses after recovery = %q", got)
	}
}

// TestRateLimitPausesOnlyItsInstallation: a 429 for one installation holds
// all its entries for the Retry-After, durably, while another installation's
// entries go on.
func TestRateLimitPausesOnlyItsInstallation(t *testing.T) {
	e := newEnv(t)
	e.gh.AddInstallation(43, "umbrella", "api")
	other := outbox.Target{InstallationID: 43, Owner: "umbrella", Repo: "api"}
	e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/acme/", Status: 429, RetryAfter: 3 * time.Second, Times: 1})
	e.tx(t, func(q *store.Queries) error {
		for _, s := range deploySteps {
			for _, tg := range []outbox.Target{target, other} {
				if _, err := outbox.EnqueueStatus(t.Context(), q, tg, status(shaA, s.state, s.desc)); err != nil {
					return err
				}
			}
			if _, err := outbox.EnqueueComment(t.Context(), q, target, outbox.Thread{Issue: 1, Key: "reply:1"}, s.desc); err != nil {
				return err
			}
		}
		return nil
	})
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	var until time.Time
	waitFor(t, 10*time.Second, "a durable pause after the rate limit", func() bool {
		return e.st.Pool().QueryRow(t.Context(), `SELECT until FROM github_outbox_pauses WHERE installation_id = 42`).Scan(&until) == nil
	})
	limitedAt := e.gh.RequestsTo("", "/repos/acme/")[0].At
	if e.gh.RequestsTo("", "/repos/acme/")[0].Status != 429 {
		t.Fatalf("first request of the installation was not the rate-limited one")
	}
	if d := until.Sub(limitedAt); d < 2900*time.Millisecond || d > 4*time.Second {
		t.Errorf("paused for %s after the 429, want Retry-After 3s", d)
	}
	waitFor(t, 10*time.Second, "the other installation", func() bool {
		return len(e.gh.Statuses("umbrella/api", shaA)) == len(deploySteps)
	})
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	acme := e.gh.RequestsTo("", "/repos/acme/")
	if len(acme) < 2 || acme[1].At.Sub(limitedAt) < 2900*time.Millisecond {
		t.Errorf("next request of the limited installation %s after the 429, want ≥ 3s", acme[1].At.Sub(limitedAt))
	}
	if got := descriptions(e.gh.Statuses(fullRepo, shaA)); fmt.Sprint(got) != fmt.Sprint(wantDescriptions()) {
		t.Errorf("statuses = %q", got)
	}
}

// TestPermanentFailuresMoveOn: what GitHub refuses for good is marked failed
// and does not hold up its key; an edit of a deleted comment posts it anew.
func TestPermanentFailuresMoveOn(t *testing.T) {
	e := newEnv(t)
	th := outbox.Thread{Issue: 8, Key: "reply:3"}
	e.tx(t, func(q *store.Queries) error {
		if _, err := outbox.EnqueueReaction(t.Context(), q, target, 123456789, "eyes"); err != nil { // no such comment
			return err
		}
		if _, err := outbox.EnqueueReaction(t.Context(), q, target, 123456789, "rocket"); err != nil {
			return err
		}
		_, err := outbox.EnqueueComment(t.Context(), q, target, th, "first")
		return err
	})
	_, stop := outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if got := outboxtest.States(t, e.st); fmt.Sprint(got) != "[failed failed sent]" {
		t.Fatalf("states = %v, want both reactions failed and the comment sent", got)
	}
	stop()

	// The comment is deleted on GitHub: Keystone only knows its old id.
	thread, err := e.st.CommentThread(t.Context(), inst, "acme", "web", 8, th.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetThreadComment(t.Context(), thread.ID, 987654321); err != nil {
		t.Fatal(err)
	}
	e.tx(t, func(q *store.Queries) error {
		_, err := outbox.EnqueueComment(t.Context(), q, target, th, "second")
		return err
	})
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	c := e.gh.Comments(fullRepo, 8)
	if len(c) != 2 || !strings.HasPrefix(c[1].Body, "second") {
		t.Errorf("comments = %+v, want the first and a new one with the second body", c)
	}
}

// TestGivesUpOnEntriesTooOld: an entry that keeps failing is marked failed
// once older than GiveUpAfter, so nothing stays pending forever.
func TestGivesUpOnEntriesTooOld(t *testing.T) {
	e := newEnv(t)
	e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/", Status: 503})
	e.tx(t, func(q *store.Queries) error {
		_, err := outbox.EnqueueStatus(t.Context(), q, target, status(shaA, "pending", "Queued"))
		return err
	})
	cfg := outboxtest.Config()
	cfg.GiveUpAfter = 1500 * time.Millisecond
	outboxtest.Start(t, e.st, e.app, cfg)
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if got := outboxtest.States(t, e.st); fmt.Sprint(got) != "[failed]" {
		t.Errorf("states = %v, want failed", got)
	}
	if n := len(e.gh.RequestsTo("", "/repos/")); n < 2 {
		t.Errorf("%d attempts before giving up, want retries first", n)
	}
}

// countingTransport measures how many requests to each installation's
// repositories are in flight at once, across every client sharing it.
type countingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	now  map[string]int
	max  map[string]int
	all  int
	mall int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	owner := ""
	if p := strings.Split(r.URL.Path, "/"); len(p) > 2 && p[1] == "repos" {
		owner = p[2]
	}
	c.mu.Lock()
	c.now[owner]++
	c.all++
	c.max[owner] = max(c.max[owner], c.now[owner])
	c.mall = max(c.mall, c.all)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.now[owner]--
		c.all--
		c.mu.Unlock()
	}()
	return c.next.RoundTrip(r)
}

// TestSerialPerInstallationAcrossProcesses: two dispatchers on one database
// (two Keystone processes) never have two requests of one installation in
// flight, while two installations do go in parallel.
func TestSerialPerInstallationAcrossProcesses(t *testing.T) {
	e := newEnv(t)
	e.gh.AddInstallation(43, "umbrella", "api")
	e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/", Stall: 40 * time.Millisecond})
	ct := &countingTransport{next: http.DefaultTransport, now: map[string]int{}, max: map[string]int{}}
	for range 2 {
		app := newClient(t, e.gh, func(c *github.Config) { c.Transport = ct })
		outboxtest.Start(t, e.st, app, outboxtest.Config())
	}
	other := outbox.Target{InstallationID: 43, Owner: "umbrella", Repo: "api"}
	for i := range 5 {
		e.tx(t, func(q *store.Queries) error {
			for _, tg := range []outbox.Target{target, other} {
				for _, sha := range []string{shaA, shaB} {
					if _, err := outbox.EnqueueStatus(t.Context(), q, tg, status(sha, "pending", fmt.Sprintf("step %d", i))); err != nil {
						return err
					}
				}
				if _, err := outbox.EnqueueComment(t.Context(), q, tg, outbox.Thread{Issue: 1, Key: "reply:1"}, fmt.Sprint(i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	outboxtest.WaitIdle(t, e.st, 60*time.Second)
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.max["acme"] != 1 || ct.max["umbrella"] != 1 {
		t.Errorf("requests in flight at once: acme %d, umbrella %d; want 1 each", ct.max["acme"], ct.max["umbrella"])
	}
	if ct.mall < 2 {
		t.Errorf("never two requests in flight at all (max %d): the measure proves nothing", ct.mall)
	}
}
