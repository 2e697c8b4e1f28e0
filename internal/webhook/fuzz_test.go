package webhook_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/store/storetest"
)

// FuzzWebhook throws arbitrary events, bodies and delivery ids, signed or not,
// at the handler backed by a real database: no input may panic or get a 5xx
// while the database is up.
func FuzzWebhook(f *testing.F) {
	files, err := filepath.Glob("testdata/github-webhooks/*/*.json")
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		event := strings.Split(filepath.ToSlash(file), "/")[2]
		f.Add(event, "seed-"+filepath.Base(file), body, true)
	}
	f.Add("push", "x", []byte(`{"ref":"refs/heads/a\u0000","after":"`+strings.Repeat("f", 40)+`","installation":{"id":1},"repository":{"full_name":"a/b","clone_url":"\u0000"}}`), true)
	f.Add("installation", "y", []byte(`{"action":"created","installation":{"id":9,"account":{"login":"\u0000"}},"repositories":[{"id":1,"full_name":"a/b"}]}`), true)
	f.Add("issue_comment", "z", []byte(`{"action":"created","installation":{"id":1},"comment":{"id":1,"body":"/keystone"},"issue":{"number":1},"repository":{"full_name":"a/b"}}`), false)

	b := &testBundle{store: storetest.New(f)}
	b.router = newRouter(f, b.store)
	f.Fuzz(func(t *testing.T, event, guid string, body []byte, sign bool) {
		headers := map[string]string{"X-GitHub-Event": event, "X-GitHub-Delivery": guid}
		if !sign {
			headers["X-Hub-Signature-256"] = "sha256=" + strings.Repeat("0", 64)
		}
		rec := b.deliver(t, event, guid, body, headers)
		if rec.Code >= http.StatusInternalServerError {
			t.Fatalf("event %q guid %q: %d %s", event, guid, rec.Code, rec.Body)
		}
	})
}
