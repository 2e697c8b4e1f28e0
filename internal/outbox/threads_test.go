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
	// Counted just after the outcome is recorded: wait for it.
	waitFor(t, 5*time.Second, "3 statuses sent and 1 reaction failed in the metrics", func() bool {
		return counter(t, reg, "status", "sent") == 3 && counter(t, reg, "reaction", "failed") == 1
	})
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

// TestEntriesFollowCommitOrder: of two transactions writing one key, the
// one that inserted first but committed last is sent last, whatever the
// order of their ids: what GitHub ends with is what committed last.
func TestEntriesFollowCommitOrder(t *testing.T) {
	e := newEnv(t)
	th := outbox.Thread{Issue: 4, Key: "deploy:web"}
	firstWritten, secondDone := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.st.InTx(context.Background(), func(_ pgx.Tx, q *store.Queries) error {
			if _, err := outbox.EnqueueComment(context.Background(), q, target, th, "inserted first, committed last"); err != nil {
				return err
			}
			close(firstWritten)
			<-secondDone
			return nil
		})
	}()
	select {
	case <-firstWritten:
	case err := <-done:
		t.Fatalf("first transaction: %v", err)
	}
	e.tx(t, func(q *store.Queries) error {
		_, err := outbox.EnqueueComment(t.Context(), q, target, th, "inserted last, committed first")
		return err
	})
	close(secondDone)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var ids, seqs []int64
	rows, err := e.st.Pool().Query(t.Context(), `SELECT id, seq FROM github_outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		ids, seqs = append(ids, id), append(seqs, seq)
	}
	rows.Close()
	if len(ids) != 2 || ids[0] < ids[1] {
		t.Fatalf("entries by seq have ids %v (seqs %v), want the later-inserted one numbered first", ids, seqs)
	}
	outboxtest.Start(t, e.st, e.app, outboxtest.Config())
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	c := e.gh.Comments(fullRepo, 4)
	if len(c) != 1 || !strings.HasPrefix(c[0].Body, "inserted first, committed last") {
		t.Fatalf("comments = %+v, want one with the body committed last", c)
	}
}

// TestNumberingWaitsForItsKey: a transaction numbers its entries at commit
// under its keys' locks, so while another transaction is committing an
// entry of the same key (here: someone holds the key's lock) it waits.
func TestNumberingWaitsForItsKey(t *testing.T) {
	e := newEnv(t)
	conn, err := e.st.Pool().Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	const key = "comment:acme/web#4:reply:1"
	if _, err := conn.Exec(t.Context(), `SELECT pg_advisory_lock(19269, hashtext($1))`, key); err != nil {
		t.Fatal(err)
	}
	committed := make(chan error, 1)
	go func() {
		committed <- e.st.InTx(context.Background(), func(_ pgx.Tx, q *store.Queries) error {
			_, err := outbox.EnqueueComment(context.Background(), q, target, outbox.Thread{Issue: 4, Key: "reply:1"}, "x")
			return err
		})
	}()
	waitFor(t, 10*time.Second, "the commit to wait for the key", func() bool {
		var waiting bool
		_ = e.st.Pool().QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND classid = 19269 AND NOT granted)`).Scan(&waiting)
		return waiting
	})
	if _, err := conn.Exec(t.Context(), `SELECT pg_advisory_unlock(19269, hashtext($1))`, key); err != nil {
		t.Fatal(err)
	}
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
	var seq *int64
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT seq FROM github_outbox`).Scan(&seq); err != nil || seq == nil {
		t.Fatalf("entry numbered %v (%v), want a number", seq, err)
	}
}
