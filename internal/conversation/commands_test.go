package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/keystone-app/keystone/internal/deploy"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/outbox/outboxtest"
	"github.com/keystone-app/keystone/internal/queue"
	"github.com/keystone-app/keystone/internal/store"
)

// TestRollbackCommandConversation: an accepted rollback gets eyes at once,
// then one reply edited as the deployment moves, ending with the outcome,
// the app URL, the health result and the logs link; it is audited and asks
// the engine for exactly the rollback written.
func TestRollbackCommandConversation(t *testing.T) {
	e := newEnv(t)
	gc, err := e.deliver(comment{user: "alice", body: "Looks bad.\n/keystone rollback to 1111111"})
	if err != nil {
		t.Fatal(err)
	}
	reqs := e.engine.Requests()
	want := deploy.Request{AppID: e.web.ID, Kind: store.KindRollback, SHA: "1111111", Actor: "alice", Trigger: store.TriggerComment}
	if len(reqs) != 1 || reqs[0] != want {
		t.Fatalf("engine asked %+v, want %+v", reqs, want)
	}
	r := e.replies(fullRepo, 7)
	if len(r) != 1 || !strings.Contains(r[0].Body, "⏳ Rolling back **web** to `1111111`: queued") {
		t.Fatalf("reply after the request = %+v", r)
	}
	if re := e.gh.Reactions(fullRepo, gc.ID); len(re) != 1 || re[0].Content != "eyes" {
		t.Errorf("reactions = %+v, want eyes", re)
	}

	var d store.Deployment
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT max(id) FROM deployments`).Scan(&d.ID); err != nil {
		t.Fatal(err)
	}
	d, _ = e.st.Deployment(t.Context(), d.ID)
	d = e.engine.move(d, `state = 'running', step = 'start', description = 'Starting 1111111'`)
	if r := e.replies(fullRepo, 7); len(r) != 1 || !strings.Contains(r[0].Body, "🔄 Rolling back") ||
		!strings.Contains(r[0].Body, "Starting 1111111") {
		t.Fatalf("reply while running = %+v", r)
	}
	e.engine.move(d, `state = 'succeeded', health_status = 200, health_ms = 800, description = 'Deployed in 2.0s · healthy (GET /healthz 200)', finished_at = now()`)
	r = e.replies(fullRepo, 7)
	if len(r) != 1 {
		t.Fatalf("%d replies, want one edited", len(r))
	}
	body := r[0].Body
	for _, part := range []string{"✅ Rolled back **web** to `1111111`", "Deployed in 2.0s", "http://apps.example:9001/",
		"healthy: GET /healthz answered 200 after 0.8s", fmt.Sprintf("https://keystone.example/deployments/%d", d.ID)} {
		if !strings.Contains(body, part) {
			t.Errorf("final reply lacks %q:\n%s", part, body)
		}
	}
	if got := e.audit(); fmt.Sprint(got) != "[command.accepted alice acme/web/web]" {
		t.Errorf("audit = %q", got)
	}
	if !e.processed(fmt.Sprintf("guid-%d", gc.ID)) {
		t.Error("delivery not marked processed")
	}
}

// TestCommands: each command's reply, reaction, audit and effect.
func TestCommands(t *testing.T) {
	tests := []struct {
		name     string
		c        comment
		reply    []string // substrings of Keystone's one reply; none: no reply
		reaction bool
		audit    []string
		locked   string // who holds web's lock afterwards
		requests int
	}{
		{name: "help needs no permission", c: comment{user: "bob", body: "/keystone help"},
			reply: []string{"**Keystone commands**", "`/keystone rollback [APP] [to SHA\\|#DEPLOYMENT]`", "apps here: `web`"}},
		{name: "bad syntax gets the usage", c: comment{user: "bob", body: "/keystone rollback to nowhere"},
			reply: []string{"I could not read `/keystone rollback to nowhere`", "needs one commit SHA", "| Command |"}},
		{name: "unknown verb", c: comment{user: "alice", body: "/keystone launch"},
			reply: []string{"`launch` is not a Keystone command"}},
		{name: "read user denied", c: comment{user: "bob", body: "/keystone rollback"},
			reply: []string{"@bob, `/keystone rollback` needs write, maintain or admin access to acme/web",
				"`read` access", "Nothing was run."},
			audit: []string{"command.denied bob acme/web"}},
		{name: "unknown user denied", c: comment{user: "stranger", body: "/keystone lock"},
			reply: []string{"@stranger", "no access"}, audit: []string{"command.denied stranger acme/web"}},
		{name: "lock", c: comment{user: "alice", body: "/keystone lock web release freeze"},
			reply:    []string{"🔒 **web** is locked by @alice: release freeze.", "`/keystone unlock web`"},
			reaction: true, audit: []string{"command.accepted alice acme/web/web", "app.locked alice acme/web/web"},
			locked: "alice"},
		{name: "maintainer may", c: comment{user: "mia", body: "/keystone lock"},
			reply: []string{"locked by @mia"}, reaction: true, locked: "mia",
			audit: []string{"command.accepted mia acme/web/web", "app.locked mia acme/web/web"}},
		{name: "status", c: comment{user: "alice", body: "/keystone status"},
			reply:    []string{"**Keystone status of acme/web**", "#### web", "| **Branch** | `main` |", "| **Serving** | nothing |"},
			reaction: true, audit: []string{"command.accepted alice acme/web"}},
		{name: "deploy a SHA", c: comment{user: "alice", body: "/keystone deploy web 2222222"},
			reply: []string{"⏳ Deploying **web** at `2222222`: queued"}, reaction: true,
			audit: []string{"command.accepted alice acme/web/web"}, requests: 1},
		{name: "several apps need a name", c: comment{repo: "acme/multi", user: "alice", body: "/keystone rollback"},
			reply: []string{"several apps (api, web)", "`/keystone rollback api`"}},
		{name: "bot comment ignored", c: comment{user: "dependabot[bot]", userType: "Bot", body: "/keystone deploy"}},
		{name: "own comment ignored", c: comment{user: "keystone-test[bot]", body: "/keystone help"}},
		{name: "comment by our App ignored", c: comment{user: "alice", viaApp: githubtest.DefaultAppID, body: "/keystone help"}},
		{name: "edited comment ignored", c: comment{user: "alice", action: "edited", body: "/keystone lock"}},
		{name: "deleted comment ignored", c: comment{user: "alice", action: "deleted", body: "/keystone lock"}},
		{name: "no command line", c: comment{user: "alice", body: "we should /keystone lock this"}},
		{name: "repository without apps", c: comment{repo: "acme/empty", user: "alice", body: "/keystone help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			gc, err := e.deliver(tt.c)
			if err != nil {
				t.Fatalf("comment job: %v", err)
			}
			repo := cmpOr(tt.c.repo, fullRepo)
			r := e.replies(repo, 7)
			switch {
			case len(tt.reply) == 0 && len(r) != 0:
				t.Fatalf("replied %q, want silence", r[0].Body)
			case len(tt.reply) > 0 && len(r) != 1:
				t.Fatalf("%d replies, want 1", len(r))
			}
			for _, part := range tt.reply {
				if !strings.Contains(r[0].Body, part) {
					t.Errorf("reply lacks %q:\n%s", part, r[0].Body)
				}
			}
			if got := len(e.gh.Reactions(repo, gc.ID)) == 1; got != tt.reaction {
				t.Errorf("eyes reaction %v, want %v", got, tt.reaction)
			}
			if got := e.audit(); fmt.Sprint(got) != fmt.Sprint(tt.audit) && !(len(got) == 0 && len(tt.audit) == 0) {
				t.Errorf("audit = %q, want %q", got, tt.audit)
			}
			web, err := e.st.App(t.Context(), e.web.ID)
			if err != nil {
				t.Fatal(err)
			}
			if web.LockedBy != tt.locked {
				t.Errorf("web locked by %q, want %q", web.LockedBy, tt.locked)
			}
			if n := len(e.engine.Requests()); n != tt.requests {
				t.Errorf("%d deployments requested, want %d", n, tt.requests)
			}
			if !e.processed(fmt.Sprintf("guid-%d", gc.ID)) {
				t.Error("delivery not marked processed")
			}
		})
	}
}

// TestLockThenUnlock: a second lock says who holds it; unlock says who
// held it and is audited; unlocking again changes nothing.
func TestLockThenUnlock(t *testing.T) {
	e := newEnv(t)
	steps := []struct{ user, body, reply string }{
		{"alice", "/keystone lock freeze", "🔒 **web** is locked by @alice: freeze."},
		{"mia", "/keystone lock mine now", "**web** is already locked by @alice since"},
		{"mia", "/keystone unlock", "🔓 **web** is unlocked (it was locked by @alice)"},
		{"mia", "/keystone unlock web", "**web** is not locked"},
	}
	for i, s := range steps {
		if _, err := e.deliver(comment{user: s.user, body: s.body, issue: 20 + i}); err != nil {
			t.Fatal(err)
		}
		r := e.replies(fullRepo, 20+i)
		if len(r) != 1 || !strings.Contains(r[0].Body, s.reply) {
			t.Fatalf("%s: reply %+v, want %q", s.body, r, s.reply)
		}
	}
	want := "[command.accepted alice acme/web/web app.locked alice acme/web/web command.accepted mia acme/web/web " +
		"command.accepted mia acme/web/web app.unlocked mia acme/web/web command.accepted mia acme/web/web]"
	if got := e.audit(); fmt.Sprint(got) != want {
		t.Errorf("audit = %q\nwant %s", got, want)
	}
}

// TestRefusedRequest: the engine refusing a rollback (nothing to roll back
// to) is said in the reply, and the command ends.
func TestRefusedRequest(t *testing.T) {
	e := newEnv(t)
	e.engine.refuse = errNothingToRollBack
	if _, err := e.deliver(comment{user: "alice", body: "/keystone rollback"}); err != nil {
		t.Fatal(err)
	}
	r := e.replies(fullRepo, 7)
	if len(r) != 1 || !strings.Contains(r[0].Body, "⚠️ Could not rollback **web**: no successful deployment before the one serving now.") {
		t.Fatalf("reply = %+v", r)
	}
	var outcome string
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT outcome FROM github_commands`).Scan(&outcome); err != nil || outcome != "refused" {
		t.Errorf("command outcome %q (%v), want refused", outcome, err)
	}
}

// TestRetriedCommandJobDoesNotRepeat: a comment job run again after it
// did its work (a crash before River recorded it) adds no reaction, reply,
// audit event or deployment.
func TestRetriedCommandJobDoesNotRepeat(t *testing.T) {
	e := newEnv(t)
	gc, err := e.deliver(comment{user: "alice", body: "/keystone deploy"})
	if err != nil {
		t.Fatal(err)
	}
	var deliveryID int64
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT id FROM webhook_deliveries WHERE guid = $1`,
		fmt.Sprintf("guid-%d", gc.ID)).Scan(&deliveryID); err != nil {
		t.Fatal(err)
	}
	// Also a retry in the middle: accepted and requested, not yet done.
	if _, err := e.st.Pool().Exec(t.Context(), `UPDATE github_commands SET outcome = 'accepted'`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.work(deliveryID); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.engine.Requests()); n != 1 {
		t.Errorf("%d deployments requested, want 1", n)
	}
	if r := e.replies(fullRepo, 7); len(r) != 1 {
		t.Errorf("%d replies, want 1", len(r))
	}
	if n := len(e.gh.Reactions(fullRepo, gc.ID)); n != 1 {
		t.Errorf("%d reactions, want 1", n)
	}
	if got := e.audit(); len(got) != 1 {
		t.Errorf("audit = %q, want one event", got)
	}
}

// TestPermissionCheckWaitsForGitHub: while GitHub cannot answer the
// permission check the job is snoozed, not failed; then it goes on.
func TestPermissionCheckWaitsForGitHub(t *testing.T) {
	e := newEnv(t)
	remove := e.gh.Inject(githubtest.Fault{PathPrefix: "/repos/acme/web/collaborators/", Status: 502})
	gc, err := e.deliver(comment{user: "alice", body: "/keystone lock"})
	var snooze *river.JobSnoozeError
	if !errors.As(err, &snooze) || snooze.Duration < 30*time.Second {
		t.Fatalf("job error %v, want a snooze of at least 30s", err)
	}
	remove()
	var id int64
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT id FROM webhook_deliveries WHERE guid = $1`,
		fmt.Sprintf("guid-%d", gc.ID)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := e.work(id); err != nil {
		t.Fatal(err)
	}
	outboxtest.WaitIdle(t, e.st, 20*time.Second)
	if web, _ := e.st.App(t.Context(), e.web.ID); web.LockedBy != "alice" {
		t.Errorf("web locked by %q after GitHub came back", web.LockedBy)
	}
}

// TestRequestErrorsRetriedThenSaid: an error of the engine that is not a
// refusal fails the job, to be retried; on the last attempt it is said.
func TestRequestErrorsRetriedThenSaid(t *testing.T) {
	e := newEnv(t)
	e.engine.refuse = context.DeadlineExceeded // e.g. the fetch timed out
	gc, err := e.deliver(comment{user: "alice", body: "/keystone deploy"})
	if err == nil || errors.As(err, new(*river.JobSnoozeError)) {
		t.Fatalf("job error %v, want a failure to retry", err)
	}
	var id int64
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT id FROM webhook_deliveries WHERE guid = $1`,
		fmt.Sprintf("guid-%d", gc.ID)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	last := &river.Job[queue.CommentArgs]{JobRow: &rivertype.JobRow{ID: 99, Attempt: 5, MaxAttempts: 5},
		Args: queue.CommentArgs{DeliveryID: id}}
	if err := e.commands.Work(t.Context(), last); err != nil {
		t.Fatalf("last attempt: %v", err)
	}
	r := e.replies(fullRepo, 7)
	if len(r) != 1 || !strings.Contains(r[0].Body, "Could not deploy **web**: Keystone could not start it") {
		t.Fatalf("replies = %+v", r)
	}
	if n := len(e.engine.Requests()); n != 2 {
		t.Errorf("%d requests, want 2 (one per attempt)", n)
	}
}
