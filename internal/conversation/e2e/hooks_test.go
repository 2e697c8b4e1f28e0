// Package e2e_test runs the real `keystone serve` for the conversation on
// GitHub: the fake GitHub, real PostgreSQL, and with the deploy engine the
// git server and the real Docker engine. Tests kill and restart it, miss
// deliveries while it is down and break GitHub for a while.
package e2e_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/webhook"
)

func TestMain(m *testing.M) { storetest.Main(m) }

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

// await polls cond until it holds, failing the test after timeout.
func await(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deploytest.Eventually(t, timeout, what, func() (bool, error) { return cond(), nil })
}
