package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/keystonetest"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/webhook"
)

const hookSecret = "conversation-test-secret"

// hooks plays GitHub's webhook sender: it posts deliveries to Keystone,
// records each attempt in the fake's delivery log (failed when Keystone
// did not answer 2xx) and sends a delivery again when asked to redeliver.
type hooks struct {
	t    *testing.T
	fake *githubtest.Server
	mu   sync.Mutex
	url  string
	sent map[string]sentHook // by GUID
}

type sentHook struct {
	event string
	body  []byte
}

func newHooks(t *testing.T, fake *githubtest.Server) *hooks {
	h := &hooks{t: t, fake: fake, sent: map[string]sentHook{}}
	fake.OnRedeliver(func(d githubtest.Delivery) {
		h.mu.Lock()
		s := h.sent[d.GUID]
		h.mu.Unlock()
		h.post(d.GUID, s.event, s.body) // the fake logged this attempt itself
	})
	return h
}

func (h *hooks) setURL(u string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.url = u
}

// deliver sends a delivery and logs it with the fake as GitHub would.
func (h *hooks) deliver(event string, body []byte) (guid string, code int) {
	guid = fmt.Sprintf("%x", time.Now().UnixNano())
	h.mu.Lock()
	h.sent[guid] = sentHook{event: event, body: body}
	h.mu.Unlock()
	code = h.post(guid, event, body)
	logged := code
	if code == 0 {
		logged = http.StatusBadGateway // GitHub reports unreachable hosts as failures
	}
	h.fake.AddDelivery(githubtest.Delivery{GUID: guid, Event: event, StatusCode: logged, InstallationID: 42})
	return guid, code
}

func (h *hooks) post(guid, event string, body []byte) int {
	h.mu.Lock()
	u := h.url
	h.mu.Unlock()
	req, _ := http.NewRequest(http.MethodPost, u+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-Hub-Signature-256", webhook.Sign([]byte(hookSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// commentEvent is an issue_comment delivery of a comment the fake stored.
func commentEvent(c githubtest.Comment, repo string) []byte {
	owner, name, _ := strings.Cut(repo, "/")
	user := map[string]any{"login": c.User, "id": 7, "type": "User"}
	b, _ := json.Marshal(map[string]any{
		"action": "created",
		"comment": map[string]any{"id": c.ID, "body": c.Body, "user": user, "performed_via_github_app": nil,
			"created_at": c.CreatedAt, "updated_at": c.UpdatedAt},
		"issue": map[string]any{"number": c.Issue, "title": "t", "user": user,
			"pull_request": map[string]any{"url": "https://api.github.com/repos/" + repo + "/pulls/" + fmt.Sprint(c.Issue)}},
		"repository": map[string]any{"id": 1, "name": name, "full_name": repo, "owner": map[string]any{"login": owner},
			"clone_url": "https://github.com/" + repo + ".git"},
		"sender":       user,
		"installation": map[string]any{"id": 42},
	})
	return b
}

func keystoneEnv(t *testing.T, dbURL string, fake *githubtest.Server) map[string]string {
	return map[string]string{
		"DATABASE_URL": dbURL, "KEYSTONE_GITHUB_WEBHOOK_SECRET": hookSecret, "KEYSTONE_DATA_DIR": t.TempDir(),
		"KEYSTONE_GITHUB_APP_ID": fmt.Sprint(fake.AppID), "KEYSTONE_GITHUB_PRIVATE_KEY": string(fake.PrivateKeyPEM),
		"KEYSTONE_GITHUB_API_URL": fake.URL, "KEYSTONE_PUBLIC_URL": "http://keystone.test:8080",
	}
}

// botReplies returns Keystone's replies (with a thread marker) on an issue.
func botReplies(fake *githubtest.Server, repo string, issue int) []githubtest.Comment {
	var out []githubtest.Comment
	for _, c := range fake.Comments(repo, issue) {
		if c.User == fake.Slug+"[bot]" && strings.Contains(c.Body, "<!-- keystone:thread=") {
			out = append(out, c)
		}
	}
	return out
}

// metricsText reads /metrics (served to loopback clients without a token).
func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func await(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond) // polling the awaited condition
	}
}

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
	if _, code := h.deliver("issue_comment", commentEvent(lock, "acme/web")); code != http.StatusAccepted {
		t.Fatalf("lock command delivery answered %d", code)
	}
	await(t, 30*time.Second, "the reply to reach GitHub", func() bool { return len(botReplies(fake, "acme/web", 7)) == 1 })
	ks.Kill() // GitHub has the reply; Keystone never heard back

	status := fake.AddComment("acme/web", 8, "alice", "/keystone status")
	if _, code := h.deliver("issue_comment", commentEvent(status, "acme/web")); code != 0 {
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
