package outbox_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystone-app/keystone/internal/outbox"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestDeployCommentFollowsPullRequest: a thread on "the pull request commit
// X came from" is one comment per pull request and key, edited by later
// commits of the same pull request; a commit of no pull request gets none.
func TestDeployCommentFollowsPullRequest(t *testing.T) {
	e := newEnv(t)
	shaC := strings.Repeat("c", 40)
	e.gh.SetPullsForCommit(fullRepo, shaA, 11)
	e.gh.SetPullsForCommit(fullRepo, shaB, 11)
	deploy := func(sha, app, body string) {
		e.tx(t, func(q *store.Queries) error {
			_, err := outbox.EnqueueComment(t.Context(), q, target, outbox.Thread{PullOfSHA: sha, Key: "deploy:" + app}, body)
			return err
		})
	}
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	deploy(shaA, "web", "web at aaaaaaa")
	deploy(shaA, "worker", "worker at aaaaaaa")
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	deploy(shaB, "web", "web at bbbbbbb")
	deploy(shaC, "web", "web at ccccccc")
	outboxtest.WaitIdle(t, e.st, 20*time.Second)

	c := e.gh.Comments(fullRepo, 11)
	if len(c) != 2 {
		t.Fatalf("%d comments on #11, want one per app", len(c))
	}
	if !strings.HasPrefix(c[0].Body, "web at bbbbbbb") || !strings.HasPrefix(c[1].Body, "worker at aaaaaaa") {
		t.Errorf("comments = %q / %q, want web edited to the later commit", c[0].Body, c[1].Body)
	}
	if got := outboxtest.States(t, e.st); got[len(got)-1] != store.OutboxSkipped {
		t.Errorf("states = %v, want the commit of no pull request skipped", got)
	}
	if n := len(e.gh.RequestsTo("GET", "/repos/acme/web/commits/"+shaA+"/pulls")); n != 1 {
		t.Errorf("pull requests of a commit asked %d times, want once", n)
	}
}

// TestMetricsCountOutcomes: the counters and the pending gauge say what
// happened.
func TestMetricsCountOutcomes(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	e.tx(t, func(q *store.Queries) error {
		for _, s := range deploySteps[:3] {
			if _, err := outbox.EnqueueStatus(t.Context(), q, target, status(shaA, s.state, s.desc)); err != nil {
				return err
			}
		}
		_, err := outbox.EnqueueReaction(t.Context(), q, target, 5, "eyes") // no such comment: failed
		return err
	})
	cfg := outboxtest.Config()
	cfg.Registerer = reg
	d, err := outbox.New(e.st, e.app, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, reg, "keystone_github_outbox_pending", "status"); got != 3 {
		t.Errorf("pending statuses before sending = %v, want 3", got)
	}
	outboxtest.Run(t, d)
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if got := gauge(t, reg, "keystone_github_outbox_pending", "status"); got != 0 {
		t.Errorf("pending statuses after sending = %v, want 0", got)
	}
	if n := counter(t, reg, "status", "sent"); n != 3 {
		t.Errorf("status sent = %v, want 3", n)
	}
	if n := counter(t, reg, "reaction", "failed"); n != 1 {
		t.Errorf("reaction failed = %v, want 1", n)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{kind=%q} not exported", name, kind)
	return 0
}

func counter(t *testing.T, reg *prometheus.Registry, kind, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keystone_github_outbox_entries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestConcurrentWritersKeepTheirOrder: a transaction that writes a key
// after another one did, while that one has not committed, waits for it, so
// entries are sent in the order they were written, never the later first.
func TestConcurrentWritersKeepTheirOrder(t *testing.T) {
	e := newEnv(t)
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	th := outbox.Thread{Issue: 4, Key: "deploy:web"}
	firstWritten := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.st.InTx(context.Background(), func(_ pgx.Tx, q *store.Queries) error {
			if _, err := outbox.EnqueueComment(context.Background(), q, target, th, "first"); err != nil {
				return err
			}
			close(firstWritten)
			time.Sleep(500 * time.Millisecond) // a long transaction: commits after the second writer began
			return nil
		})
	}()
	<-firstWritten
	e.tx(t, func(q *store.Queries) error {
		_, err := outbox.EnqueueComment(t.Context(), q, target, th, "second")
		return err
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	c := e.gh.Comments(fullRepo, 4)
	if len(c) != 1 || !strings.HasPrefix(c[0].Body, "second") {
		t.Fatalf("comments = %+v, want one ending with the second body", c)
	}
}
