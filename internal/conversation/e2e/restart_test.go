package e2e_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store/storetest"
)

// TestConversationSurvivesKillAndMissedDelivery runs the real binary: it is
// killed while GitHub is acting on its reply to a command (the answer never
// comes), and a second command arrives while it is down. After a restart the
// first reply is found by its marker instead of being posted again, the
// missed delivery is redelivered at start-up and answered, and every
// reaction and reply exists exactly once.
func TestConversationSurvivesKillAndMissedDelivery(t *testing.T) {
	dbURL := storetest.Fresh(t)
	fake := githubtest.New(t)
	fake.AddInstallation(42, "acme", "web")
	fake.SetPermission("acme/web", "alice", "write")
	pool, err := pgxpool.New(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(t.Context(), `INSERT INTO apps (installation_id, owner, repo, name, branch)
		VALUES (42, 'acme', 'web', 'web', 'main')`); err != nil {
		t.Fatal(err)
	}
	env := keystoneEnv(t, dbURL, fake)
	h := newHooks(t, fake)

	ks := keystonetest.Start(t, env)
	h.setURL(ks.URL)
	fake.Inject(githubtest.Fault{Method: "POST", PathPrefix: "/repos/acme/web/issues/7/comments", Stall: time.Minute, Times: 1})
	lock := fake.AddComment("acme/web", 7, "alice", "/keystone lock web freeze")
	if _, code := h.deliver("issue_comment", lock.Event("acme/web", 42)); code != http.StatusAccepted {
		t.Fatalf("lock command delivery answered %d", code)
	}
	await(t, 30*time.Second, "the reply to reach GitHub", func() bool { return len(botReplies(fake, "acme/web", 7)) == 1 })
	ks.Kill() // GitHub has the reply; Keystone never heard back

	status := fake.AddComment("acme/web", 8, "alice", "/keystone status")
	if _, code := h.deliver("issue_comment", status.Event("acme/web", 42)); code != 0 {
		t.Fatalf("delivery while Keystone is down answered %d", code)
	}

	ks = keystonetest.Start(t, env)
	h.setURL(ks.URL)
	await(t, 60*time.Second, "the missed command's reply", func() bool { return len(botReplies(fake, "acme/web", 8)) == 1 })
	await(t, 30*time.Second, "the outbox to empty", func() bool {
		var n int
		return pool.QueryRow(t.Context(), `SELECT count(*) FROM github_outbox WHERE state = 'pending'`).Scan(&n) == nil && n == 0
	})

	if r := botReplies(fake, "acme/web", 7); len(r) != 1 || !strings.Contains(r[0].Body, "🔒 **web** is locked by @alice: freeze.") {
		t.Errorf("lock replies = %+v, want one", r)
	}
	if n := len(fake.RequestsTo("POST", "/repos/acme/web/issues/7/comments")); n != 1 {
		t.Errorf("the lock reply was posted %d times, want 1", n)
	}
	if n := len(fake.RequestsTo("GET", "/repos/acme/web/issues/7/comments")); n == 0 {
		t.Errorf("the restarted Keystone did not look for its reply: the test proves nothing")
	}
	if r := botReplies(fake, "acme/web", 8); len(r) != 1 || !strings.Contains(r[0].Body, "Keystone status of acme/web") {
		t.Errorf("status replies = %+v", r)
	}
	for _, c := range []githubtest.Comment{lock, status} {
		if re := fake.Reactions("acme/web", c.ID); len(re) != 1 || re[0].Content != "eyes" {
			t.Errorf("reactions to comment %d = %+v, want one eyes", c.ID, re)
		}
	}
	if r := fake.Redelivered(); len(r) != 1 {
		t.Errorf("%d redeliveries asked, want 1", len(r))
	}
	var lockedBy string
	if err := pool.QueryRow(t.Context(), `SELECT COALESCE(locked_by, '') FROM apps WHERE name = 'web'`).Scan(&lockedBy); err != nil || lockedBy != "alice" {
		t.Errorf("web locked by %q (%v), want alice", lockedBy, err)
	}
	metrics := metricsText(t, ks.URL)
	for _, m := range []string{"keystone_webhook_deliveries_redelivered_total 1", `keystone_github_outbox_entries_total{kind="comment",outcome="sent"}`,
		`keystone_commands_total{outcome="accepted",verb="status"} 1`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}
